"""The built-in demo: a recording the project makes itself.

A simulated PECS II clip (``models.simulator.make_demo_clip``: needle entering,
advancing to the plane, injection) and a scripted voice track synthesised with eSpeak
NG (synthetic voice, not a human one), replayed through every process like a lab
recording. Writes ``OUT/annotated.mp4``, ``OUT/events.jsonl`` and the session record.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEMO_SECONDS = 15.0
DEMO_FPS = 20
# (media time in s, what the operator says). The wake phrase comes first, as in use.
VOICE_SCRIPT = (
    (0.5, "assistant, show fascia"),
    (3.3, "assistant, quality score"),
    (6.1, "assistant, needle depth"),
    (8.9, "assistant, mark injection start"),
    (12.1, "assistant, hide overlay"),
)


class DemoError(RuntimeError):
    pass


def synthesise(text: str, voice: str = "en-us", speed_wpm: int = 150) -> np.ndarray:
    """eSpeak NG speech as 16 kHz mono int16 (a synthetic voice)."""
    from speech.audio import read_wav

    exe = shutil.which("espeak-ng")
    if not exe:
        raise DemoError("espeak-ng is not installed (Debian package espeak-ng): "
                        "run scripts/setup.sh")
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "say.wav"
        subprocess.run([exe, "-v", voice, "-s", str(speed_wpm), "-w", str(wav), text],
                       check=True, capture_output=True, timeout=60)
        samples, _ = read_wav(wav)
    return samples


def make_voice_track(path: str | Path, seconds: float = DEMO_SECONDS,
                     script=VOICE_SCRIPT, noise_dbfs: float = -55.0, seed: int = 0) -> list[dict]:
    """A WAV of ``seconds`` with each scripted phrase at its time over faint noise."""
    from speech.audio import write_wav

    rate = 16000
    track = np.random.default_rng(seed).normal(0, 32767 * 10 ** (noise_dbfs / 20),
                                               int(seconds * rate))
    placed = []
    for t, text in script:
        speech = synthesise(text).astype(np.float64)
        i = int(t * rate)
        j = min(len(track), i + len(speech))
        track[i:j] += speech[: j - i]
        placed.append({"t_s": t, "end_s": round(j / rate, 3), "text": text})
    write_wav(path, np.clip(track, -32768, 32767).astype(np.int16), rate)
    return placed


def prepare_inputs(folder: str | Path) -> tuple[Path, Path, dict]:
    """Make (or reuse) the demo clip and voice track in ``folder``."""
    from models.simulator import make_demo_clip

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    video, audio, meta_path = folder / "demo.mp4", folder / "demo_voice.wav", folder / "demo.json"
    if not (video.exists() and audio.exists() and meta_path.exists()):
        log.info("making the simulated demo clip and its synthetic voice track in %s", folder)
        meta = make_demo_clip(str(video), seconds=DEMO_SECONDS, fps=DEMO_FPS, seed=0)
        script = make_voice_track(audio)
        summary = {"video": video.name, "audio": audio.name, "voice_script": script,
                   "synthetic": "simulated images and an eSpeak NG voice",
                   "spacing_mm": meta.get("spacing_mm") if isinstance(meta, dict) else None}
        meta_path.write_text(json.dumps(summary, indent=2))
    return video, audio, json.loads(meta_path.read_text())


def run_demo(settings, config_path: str | None, out_dir: str | Path, progress: bool = True) -> int:
    from assistant.replay import replay

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    video, audio, meta = prepare_inputs(out / "inputs")
    overrides = {"assistant": {"session_db": str((out / "sessions.sqlite").resolve())},
                 "tts": {"output": "wav_dir", "wav_dir": str((out / "speech").resolve())}}
    summary = replay(settings, config_path, video, out, audio=audio, progress=progress,
                     overrides=overrides)
    print(f"demo: {summary.frames} frames ({summary.media_s:.1f} s of simulated PECS II scan "
          f"with a synthetic voice track) in {summary.wall_s:.1f} s "
          f"({summary.speed:.1f}x real time)")
    print(f"  annotated video: {summary.annotated}")
    print(f"  events:          {summary.events} ({summary.events_count} events)")
    from assistant.records import SessionStore
    from assistant.report import main as report_main
    with SessionStore(out / "sessions.sqlite", create=False) as store:
        latest = max(s["id"] for s in store.sessions())
    report = out / "report.html"
    if report_main(["--db", str(out / "sessions.sqlite"), "--out", str(report), str(latest)]) == 0:
        print(f"  teaching report: {report}")
    heard = [json.loads(x) for x in Path(summary.events).read_text().splitlines()]
    for e in heard:
        if e["kind"] in ("command_heard", "command_unclear", "action", "alert", "speech", "caveat"):
            t = e.get("media_time_s")
            print(f"  {t if t is not None else '':>6} {e['kind']:>13}: {e['text']}")
    print("NOT FOR CLINICAL USE")
    return 0

