"""Bus latency, frame to renderer, with every process running; and peak memory.

    .venv/bin/python benchmarks/bus_latency.py [--seconds 20] [--fps 20 60] [--video PATH]

For each rate it starts the whole system (launcher, proxy, source, segmentation,
speech, speech output, assistant, renderer) with the source playing a 562x542 grey clip
(a real one from ../shared/data/regional_us_videos when present), and measures:

* transport: the frame's header timestamp (taken just before the source sends it) to
  its arrival in a subscriber process beside the renderer, through the proxy;
* end to end: the same frame drawn by the renderer (``Rendered.latency_ms``);
* drift: transport p95 in the first and the last third of the run (a growing queue
  would show here);
* peak resident memory (VmHWM) of all processes together.

Prints figures; asserts nothing. CLOCK_MONOTONIC is shared by all processes on Linux,
so timestamps from different processes compare directly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant import messages as m  # noqa: E402
from assistant.bus import BusClient  # noqa: E402
from assistant.config import load_settings  # noqa: E402
from assistant.launcher import Launcher  # noqa: E402


def default_video() -> Path:
    real = ROOT.parent / "shared" / "data" / "regional_us_videos" / "videos" / "1595.mp4"
    if real.exists():
        return real
    import cv2
    path = Path(tempfile.mkdtemp()) / "grey.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 20, (562, 542))
    rng = np.random.default_rng(0)
    for _ in range(100):
        g = rng.integers(0, 255, (542, 562), np.uint8)
        w.write(np.dstack([g, g, g]))
    w.release()
    return path


def vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pct(a, q):
    return float(np.percentile(a, q)) if len(a) else float("nan")


def probe_process(endpoints, seconds: float, conn) -> None:
    """In its own process (nothing else on its GIL): frame arrival times via the proxy."""
    probe = BusClient(endpoints, "probe", ("frame", "rendered"))
    transport, e2e = [], []
    t_end = time.monotonic() + seconds + 2
    warm_until = time.monotonic() + 2  # skip the first 2 s (models warming up)
    while time.monotonic() < t_end:
        got = probe.recv(50)
        if got is None:
            continue
        now = time.monotonic()
        for h, msg in [got] + probe.drain():
            if now < warm_until:
                continue
            if isinstance(msg, m.Frame):
                transport.append((now - h.t_mono) * 1000)
            elif isinstance(msg, m.Rendered):
                e2e.append(msg.latency_ms)
    probe.close()
    conn.send((transport, e2e))


def run(fps: float, seconds: float, video: Path, nodes: tuple[str, ...]) -> dict:
    overrides = {"source": {"kind": "video", "path": str(video), "fps": fps, "loop": True},
                 "speech": {"input": "none"},
                 "tts": {"output": "none"},
                 "assistant": {"session_db": str(Path(tempfile.mkdtemp()) / "s.sqlite")}}
    settings = load_settings(None, overrides)
    launcher = Launcher(settings, None, overrides=overrides, nodes=nodes)
    with launcher:
        launcher.wait_ready(120)
        import multiprocessing as mp
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=probe_process, args=(launcher.endpoints, seconds, child))
        proc.start()
        transport, e2e = parent.recv()
        proc.join(10)
        pids = [os.getpid()] + [p.pid for p in launcher.nodes.values() if p.pid]
        mem_mb = sum(vm_hwm_kb(p) for p in pids) / 1024
        per_node = {n: round(vm_hwm_kb(p.pid) / 1024, 1) for n, p in launcher.nodes.items() if p.pid}
        seg_stats = launcher.nodes.get("segmentation").stats if "segmentation" in launcher.nodes else {}
    third = max(1, len(transport) // 3)
    return {
        "fps": fps, "seconds": seconds, "frames_seen": len(transport),
        "frames_rate_seen": round(len(transport) / seconds, 1),
        "transport_ms_p50": round(pct(transport, 50), 3),
        "transport_ms_p95": round(pct(transport, 95), 3),
        "transport_ms_max": round(max(transport), 3) if transport else None,
        "transport_p95_first_third": round(pct(transport[:third], 95), 3),
        "transport_p95_last_third": round(pct(transport[-third:], 95), 3),
        "rendered_frames": len(e2e),
        "end_to_end_ms_p50": round(pct(e2e, 50), 2),
        "end_to_end_ms_p95": round(pct(e2e, 95), 2),
        "peak_rss_mb_all_processes": round(mem_mb, 1),
        "peak_rss_mb_per_node": per_node,
        "segmentation_stats": seg_stats,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--fps", type=float, nargs="+", default=[20.0, 60.0])
    ap.add_argument("--video", type=Path, default=None)
    ap.add_argument("--nodes", default="source,segmentation,speech,tts,assistant,renderer")
    args = ap.parse_args(argv)
    video = args.video or default_video()
    print(f"clip: {video} ({'real' if 'shared' in str(video) else 'generated'})")
    for fps in args.fps:
        r = run(fps, args.seconds, video, tuple(args.nodes.split(",")))
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
