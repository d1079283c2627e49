"""Writes the screenshots of docs/AR.md into docs/img (generated frames only, no real data).

    nice -n 5 .venv/bin/python benchmarks/render_screenshots.py [--out docs/img]

* monitor.jpg        the monitor view of a simulated PECS II frame (models.simulator), with
                     alerts, recording, a pending confirmation and the 3D cue in the panel;
* monitor_unsure.jpg the same view with the vessel and nerve below min_confidence;
* monitor_stale.jpg  a stale segmentation: not drawn, and the reason on screen;
* monitor_notice.jpg a command asked for but not understood: "not understood: say again";
* hmd.jpg            the head-mounted view: a generated room scene with a drawn hand, the
                     panel anchored beside it by ar.hmd's pure anchor functions;
* stereo.jpg         the side-by-side headset output of the same (scaled to half size);
* cue3d.png          the 3D depth cue at 18, 10, 3, 0 mm and 4 mm past the plane;
* browser.jpg        the live browser view (ar.web) as headless Chromium shows it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ar.cue3d import CueRenderer  # noqa: E402
from ar.hmd import (Hand, compose_stereo, corner_anchor, draw_hands, fit_scene, make_panel,  # noqa: E402
                    panel_target, update_anchor)
from ar.overlay import doubt_line, panel_prompt, render_monitor, render_monitor_info  # noqa: E402
from ar.settings import HmdSettings, RenderSettings  # noqa: E402
from ar.testframes import simulated_scene, synthetic_scene  # noqa: E402

MAX_BYTES = 300_000


def save(path: Path, img: np.ndarray) -> None:
    if path.suffix == ".png":
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    else:
        q = 88
        while True:
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
            if len(buf) <= MAX_BYTES or q <= 50:
                break
            q -= 6
    if not ok or len(buf) > MAX_BYTES:
        raise SystemExit(f"{path}: {len(buf)} bytes, over the {MAX_BYTES} limit")
    path.write_bytes(buf.tobytes())
    print(f"{path}  {img.shape[1]}x{img.shape[0]}  {len(buf) // 1024} KB")


def scene_with_hand(w: int = 1280, h: int = 720) -> tuple[np.ndarray, Hand]:
    """A generated room: wall, a couch with a patient's chest, and a gloved hand holding a
    probe; plus that hand's 21 landmarks in mediapipe's order (wrist, thumb..little)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (70, 80, 90)
    img[int(h * 0.55):] = (60, 65, 70)
    cv2.ellipse(img, (int(w * 0.42), int(h * 0.78)), (int(w * 0.38), int(h * 0.2)), 0, 0, 360, (150, 170, 200), -1)
    cv2.rectangle(img, (int(w * 0.05), int(h * 0.72)), (int(w * 0.8), h), (120, 100, 90), -1)
    cv2.ellipse(img, (int(w * 0.42), int(h * 0.72)), (int(w * 0.3), int(h * 0.14)), 0, 180, 360, (160, 185, 215), -1)
    wrist = np.array([w * 0.30, h * 0.80])
    pts = [wrist]
    for k, (ang, length) in enumerate([(-60, 90), (-95, 120), (-105, 130), (-115, 120), (-125, 95)]):
        a = np.radians(ang)
        for j in range(1, 5):
            pts.append(wrist + np.array([np.cos(a), np.sin(a)]) * length * (0.35 + 0.65 * j / 4))
    pts = np.array(pts)
    glove = (200, 170, 120)  # a blue nitrile glove
    palm = pts[[0, 1, 5, 9, 13, 17]].astype(np.int32)
    cv2.fillPoly(img, [cv2.convexHull(palm)], glove, cv2.LINE_AA)
    for f in range(5):
        chain = pts[[1 + 4 * f, 2 + 4 * f, 3 + 4 * f, 4 + 4 * f]].astype(np.int32)
        for p0, p1 in zip(chain[:-1], chain[1:]):
            cv2.line(img, tuple(int(v) for v in p0), tuple(int(v) for v in p1), glove, 20, cv2.LINE_AA)
        for p in chain:
            cv2.circle(img, tuple(int(v) for v in p), 10, glove, -1, cv2.LINE_AA)
    probe_tip = (int(wrist[0] + 10), int(h * 0.66))
    cv2.rectangle(img, (probe_tip[0] - 45, probe_tip[1] - 80), (probe_tip[0] + 45, probe_tip[1]), (40, 40, 40), -1)
    cv2.line(img, (probe_tip[0], probe_tip[1] - 80), (probe_tip[0] - 120, probe_tip[1] - 260), (30, 30, 30), 8)
    noise = np.random.default_rng(0).normal(0, 4, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8), Hand("right", 0.99, pts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "img"))
    ap.add_argument("--seed", type=int, default=5)
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        frame, seg, state = simulated_scene(a.seed)
    except ImportError as exc:  # the simulator belongs to another package; fall back
        print(f"models.simulator unavailable ({exc}); using the synthetic scene")
        frame, seg, state = synthetic_scene()
    # the shipped model calibrates some classes' confidence on real scans; the segmentation
    # process says which, and the legend marks the rest "unverified" (as it would live)
    manifest = json.loads((ROOT / "models" / "pecs_seg.json").read_text())
    seg = dataclasses.replace(seg, calibrated=[c for c in seg.classes
                                               if c in manifest["confidence_calibration"]["classes"]])
    now = seg.frame_t_mono + 0.05
    rs = RenderSettings(monitor_cue3d=True)
    st = dataclasses.replace(state, recording=True, pending_confirmation="stop recording",
                             alerts=[{"level": "warning", "text": "artery 6 mm from the needle path"},
                                     {"level": "info", "text": "PECS II: aim between pectoralis minor and serratus"}],
                             last_heard="show fascia")
    mon, info = render_monitor_info(frame, seg, st, now, rs)
    save(out / "monitor.jpg", mon)

    conf = list(seg.confidence)
    from models.classes import CLASS_INDEX
    conf[CLASS_INDEX["vessel"]] = 0.35
    conf[CLASS_INDEX["nerve"]] = 0.3
    unsure = render_monitor(frame, dataclasses.replace(seg, confidence=conf), state, now, RenderSettings())
    save(out / "monitor_unsure.jpg", unsure)
    stale = dataclasses.replace(seg, frame_id=seg.frame_id - 3)
    save(out / "monitor_stale.jpg", render_monitor(frame, stale, state, seg.frame_t_mono + 0.812, RenderSettings()))
    said = dataclasses.replace(state, notice="not understood: say again",
                               last_heard="assistant ... (not understood)")
    save(out / "monitor_notice.jpg", render_monitor(frame, seg, said, now, RenderSettings()))

    hs = HmdSettings()
    scene_img, hand = scene_with_hand(hs.width_px, hs.height_px)
    panel = make_panel(mon, info.layout.rect, hs.panel_width_px, f"to plane {info.to_target_mm:+.1f} mm"
                       if info.to_target_mm is not None else "", doubt_line(info),
                       *panel_prompt(info))
    pw, ph = panel.shape[1], panel.shape[0]
    goal = panel_target(hand.bbox, (pw, ph), (hs.width_px, hs.height_px), hs.panel_gap_px)
    anchor = update_anchor(None, None, 0.0, hs, corner_anchor((pw, ph), (hs.width_px, hs.height_px)))
    for i in range(1, 40):  # the hand appears: the panel glides from the corner to beside it
        anchor = update_anchor(anchor, goal, i / 30, hs, (0, 0))
    scene = fit_scene(scene_img, hs)
    draw_hands(scene, [hand], probe=hand)
    cue = CueRenderer(hs.cue_size_px).render(info.to_target_mm, seg.needle.get("angle_deg"),
                                             mirror=seg.needle["entry_px"][0] > seg.needle["tip_px"][0])
    stereo = compose_stereo(scene, panel, (anchor.x, anchor.y), hs.stereo_disparity_px, cue)
    save(out / "hmd.jpg", stereo[:, :hs.width_px])
    save(out / "stereo.jpg", cv2.resize(stereo, (stereo.shape[1] // 2, stereo.shape[0] // 2),
                                        interpolation=cv2.INTER_AREA))

    cr = CueRenderer(160)
    strip = [cr.render(d, 30.0)[0] for d in (18.0, 10.0, 3.0, 0.0, -4.0)]
    save(out / "cue3d.png", np.hstack(strip))
    browser_shot(mon, out / "browser.jpg")
    return 0


def browser_shot(img: np.ndarray, path: Path) -> None:
    """The browser view in headless Chromium (skipped, with a note, when it is not installed)."""
    import shutil
    import subprocess
    import tempfile

    from ar.web import WebView

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        print(f"{path}: skipped, no chromium")
        return
    with WebView() as web, tempfile.TemporaryDirectory() as tmp:
        web.publish(img, {"nodes": {"segmentation": "online", "assistant": "online"}})
        shot = Path(tmp) / "page.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp}/profile", f"--screenshot={shot}", "--window-size=1280,800",
                        web.url], capture_output=True, timeout=90, check=False)
        page = cv2.imread(str(shot))
        if page is None:
            print(f"{path}: chromium wrote no screenshot")
            return
        save(path, page)


if __name__ == "__main__":
    sys.exit(main())
