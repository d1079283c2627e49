"""Synthetic chest-wall frames for the renderer's tests, benchmark and screenshots.

A simple, deterministic stand-in for a PECS scan (skin, pectoralis major, pectoralis
minor, serratus anterior, a rib with its acoustic shadow, pleura, a vessel and the
fascia between the muscles), with exact labels and a needle. It is not realistic and is
not meant to be: it exercises every drawing path with known ground truth.
"""
from __future__ import annotations

import numpy as np

from assistant.messages import AssistantState, Frame, SegResult, needle_dict
from models.classes import CLASS_INDEX, CLASSES


def _wave(xs: np.ndarray, base: float, amp: float, period: float, phase: float) -> np.ndarray:
    return base + amp * np.sin(2 * np.pi * xs / period + phase)


def synthetic_image_labels(h: int = 542, w: int = 562, seed: int = 0,
                           needle_t: float = 0.6) -> tuple[np.ndarray, np.ndarray, dict]:
    """(grey uint8 image, uint8 labels, needle dict) for a PECS-like scene.

    ``needle_t`` in [0, 1] moves the tip along its path from the skin (0) to just past
    the pectoralis minor / serratus plane (1).
    """
    if h < 64 or w < 64:
        raise ValueError(f"synthetic frame must be at least 64x64, got {h}x{w}")
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    x1 = np.arange(w, dtype=np.float32)
    ph = rng.uniform(0, 2 * np.pi, 4)
    # boundaries (rows) of the layers, gently wavy
    b_skin = _wave(x1, 0.07 * h, 0.01 * h, 0.9 * w, ph[0])
    b_major = _wave(x1, 0.30 * h, 0.025 * h, 0.8 * w, ph[1])
    b_minor = _wave(x1, 0.50 * h, 0.03 * h, 0.7 * w, ph[2])
    b_serr = _wave(x1, 0.66 * h, 0.02 * h, 1.1 * w, ph[3])
    labels = np.zeros((h, w), np.uint8)
    Y = ys
    labels[(Y >= b_skin) & (Y < b_major - 3)] = CLASS_INDEX["pec_major"]
    labels[(Y >= b_major - 3) & (Y < b_major + 3)] = CLASS_INDEX["fascia"]
    labels[(Y >= b_major + 3) & (Y < b_minor - 2)] = CLASS_INDEX["pec_minor"]
    labels[(Y >= b_minor + 2) & (Y < b_serr)] = CLASS_INDEX["serratus"]
    # rib (bone) and the pleura line below and beside it
    rc = (0.72 * w, 0.78 * h)
    rib = ((xs - rc[0]) / (0.13 * w)) ** 2 + ((ys - rc[1]) / (0.045 * h)) ** 2 <= 1
    pleura = (np.abs(Y - (0.86 * h + 0.01 * h * np.sin(x1 / 40))) < 3) & ~rib
    labels[pleura] = CLASS_INDEX["pleura"]
    labels[rib] = CLASS_INDEX["bone"]
    # thoracoacromial artery between major and minor, a small nerve beside it
    vc = (0.30 * w, 0.40 * h)
    labels[((xs - vc[0]) ** 2 + (ys - vc[1]) ** 2) <= (0.035 * h) ** 2] = CLASS_INDEX["vessel"]
    nc = (0.42 * w, 0.41 * h)
    labels[((xs - nc[0]) / 1.6) ** 2 + (ys - nc[1]) ** 2 <= (0.018 * h) ** 2] = CLASS_INDEX["nerve"]

    # image: speckle, brighter fascia/bone/pleura, dark vessel, shadow under the rib
    grey = np.full((h, w), 60.0, np.float32)
    lab = labels
    grey[lab == CLASS_INDEX["pec_major"]] = 85
    grey[lab == CLASS_INDEX["pec_minor"]] = 75
    grey[lab == CLASS_INDEX["serratus"]] = 80
    grey[lab == CLASS_INDEX["fascia"]] = 170
    grey[lab == CLASS_INDEX["bone"]] = 200
    grey[lab == CLASS_INDEX["pleura"]] = 180
    grey[lab == CLASS_INDEX["vessel"]] = 15
    grey[lab == CLASS_INDEX["nerve"]] = 120
    grey[(Y < b_skin)] = 110
    shadow = (np.abs(xs - rc[0]) < 0.12 * w) & (ys > rc[1] + 0.04 * h)
    grey[shadow] *= 0.25
    grey *= rng.gamma(4.0, 0.25, size=(h, w)).astype(np.float32)  # speckle
    grey *= np.clip(1.15 - 0.5 * ys / h, 0.5, 1.2)  # depth attenuation

    # needle: in-plane from the top left, tip along the path toward the minor/serratus plane
    entry = np.array([0.05 * w, b_skin[int(0.05 * w)]])
    target = np.array([0.58 * w, b_minor[int(0.58 * w)] + 4])
    tip = entry + float(np.clip(needle_t, 0, 1)) * (target - entry)
    n = int(np.hypot(*(tip - entry)))
    for t in np.linspace(0, 1, max(n, 2)):
        p = entry + t * (tip - entry)
        yi, xi = int(p[1]), int(p[0])
        grey[max(yi - 1, 0):yi + 2, max(xi - 1, 0):xi + 2] = 230
        labels[max(yi - 1, 0):yi + 2, max(xi - 1, 0):xi + 2] = CLASS_INDEX["needle"]
    img = np.clip(grey, 0, 255).astype(np.uint8)
    d = tip - entry
    angle = float(np.degrees(np.arctan2(d[1], d[0])))
    needle = {"entry": entry, "tip": tip, "angle_deg": angle}
    return img, labels, needle


def synthetic_scene(frame_id: int = 1, seed: int = 0, h: int = 542, w: int = 562,
                    needle_t: float = 0.6, t_mono: float = 100.0, spacing_mm: float = 0.08,
                    confidence: dict | None = None, block: str = "pecs2") -> tuple[Frame, SegResult, AssistantState]:
    """A matching (Frame, SegResult, AssistantState) triple for the renderer.

    ``confidence`` overrides per-class confidences by name (default 0.9 each).
    """
    img, labels, nd = synthetic_image_labels(h, w, seed, needle_t)
    conf = [0.0] + [0.9] * (len(CLASSES) - 1)
    for name, c in (confidence or {}).items():
        conf[CLASS_INDEX[name]] = float(c)
    present = [bool((labels == i).any()) for i in range(len(CLASSES))]
    tip = nd["tip"]
    frame = Frame(frame_id=frame_id, media_time_s=frame_id / 20.0, image=img, spacing_mm=spacing_mm,
                  depth_mm=h * spacing_mm, source_name="synthetic", replay=False)
    seg = SegResult(frame_id=frame_id, media_time_s=frame.media_time_s, frame_t_mono=t_mono,
                    labels=labels, classes=list(CLASSES), confidence=conf, present=present,
                    needle=needle_dict(True, tip_px=[float(tip[0]), float(tip[1])],
                                       tip_mm=[float(tip[0] * spacing_mm), float(tip[1] * spacing_mm)],
                                       angle_deg=nd["angle_deg"], depth_mm=float(tip[1] * spacing_mm),
                                       confidence=0.9,
                                       entry_px=[float(nd["entry"][0]), float(nd["entry"][1])]),
                    model="synthetic")
    state = AssistantState(frame_id=frame_id, block=block, layers={k: True for k in
                                                                    ("nerve", "vessel", "fascia", "muscle",
                                                                     "bone", "pleura", "needle")},
                           quality=72.0, quality_reason="plane visible, needle in plane",
                           guidance={"depth_mm": float(tip[1] * spacing_mm)},
                           nodes={n: "online" for n in ("source", "segmentation", "speech", "tts",
                                                        "assistant", "renderer")})
    return frame, seg, state


def simulated_scene(seed: int = 0, frame_id: int = 1, t_mono: float = 100.0, block: str = "pecs2",
                    confidence: dict | None = None, sim_params=None) -> tuple[Frame, SegResult, AssistantState]:
    """Like :func:`synthetic_scene` but from the segmentation team's B-mode simulator
    (``models.simulator.simulate_frame``) with guidance from ``assistant.guidance``: for
    screenshots and the benchmark. Imported lazily; the tests do not depend on it."""
    from assistant.blocks import default_presets, find_preset
    from assistant.guidance import compute_guidance
    from models.simulator import simulate_frame

    sim = simulate_frame(seed, sim_params) if sim_params is not None else simulate_frame(seed)
    labels = sim.labels.astype(np.uint8)
    conf = [0.0] + [0.9] * (len(CLASSES) - 1)
    for name, c in (confidence or {}).items():
        conf[CLASS_INDEX[name]] = float(c)
    present = [bool((labels == i).any()) for i in range(len(CLASSES))]
    nd = dict(sim.needle or {})
    needle = needle_dict(bool(nd.get("visible")), tip_px=nd.get("tip_px"), tip_mm=nd.get("tip_mm"),
                         angle_deg=nd.get("angle_deg"), depth_mm=nd.get("depth_mm"),
                         confidence=0.9 if nd.get("visible") else 0.0, entry_px=nd.get("entry_px"))
    frame = Frame(frame_id=frame_id, media_time_s=frame_id / 20.0, image=sim.image, spacing_mm=float(sim.spacing_mm),
                  depth_mm=float(sim.depth_mm), source_name=f"simulator seed {seed}")
    seg = SegResult(frame_id=frame_id, media_time_s=frame.media_time_s, frame_t_mono=t_mono, labels=labels,
                    classes=list(CLASSES), confidence=conf, present=present, needle=needle, model="simulator truth")
    guidance = compute_guidance(needle, labels, find_preset(default_presets(), block), float(sim.spacing_mm))
    state = AssistantState(frame_id=frame_id, block=block,
                           layers={k: True for k in ("nerve", "vessel", "fascia", "muscle", "bone", "pleura",
                                                     "needle")},
                           quality=80.0, quality_reason="simulated frame", guidance=guidance,
                           nodes={n: "online" for n in ("source", "segmentation", "speech", "tts", "assistant",
                                                        "renderer")})
    return frame, seg, state
