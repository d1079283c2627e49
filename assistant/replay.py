"""Lab replay: every frame of a recording (and its audio, aligned in time) through the
same processes as live use, with back-pressure; writes ``annotated.mp4`` (same frame
count and rate as the input) and ``events.jsonl``.

Back-pressure is by credits: at most ``replay.max_in_flight`` frames are between this
driver and the renderer; each ``Rendered`` message returns one credit. Before frame k
(media time k/fps) the driver sends the audio up to the end of that frame, so the
recognizer, the assistant and the renderer see the same inputs in the same order on
every run: two runs give the same annotations.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant import messages as m
from assistant.bus import BusClient
from assistant.config import apply_overrides
from assistant.launcher import Launcher
from assistant.sources import SourceError, open_path, probe_video

log = logging.getLogger(__name__)


class ReplayError(RuntimeError):
    pass


@dataclass
class ReplaySummary:
    frames: int
    fps: float
    wall_s: float
    media_s: float
    annotated: str
    events: str
    events_count: int
    latency_ms_p50: float
    latency_ms_p95: float
    startup_s: float = 0.0  # starting the processes, not counted in wall_s
    digest: str = ""  # CRC-32 chain over every frame written: equal runs, equal digests

    @property
    def speed(self) -> float:
        return self.media_s / self.wall_s if self.wall_s > 0 else 0.0


def _load_audio(path: str | Path) -> np.ndarray:
    # a WAV, or the audio track of a media file: 16 kHz mono int16, converted on the way in
    from speech.audio import read_audio

    samples, _info = read_audio(path)
    return samples


def _count_frames(path: Path) -> int:
    if path.is_dir():
        from assistant.sources import list_images
        return len(list_images(path))
    return probe_video(path)["frames"]


class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total or None, unit="frame", desc="replay", smoothing=0.1)

    def update(self, n: int = 1) -> None:
        if self.bar:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar:
            self.bar.close()


def replay(settings, config_path: str | None, video: str | Path, out_dir: str | Path,
           audio: str | Path | None = None, progress: bool = True,
           nodes: tuple[str, ...] | None = None, overrides: dict | None = None,
           max_frames: int | None = None, drill=None, video_audio: bool = True) -> ReplaySummary:
    """Replay ``video`` (and ``audio``) through the nodes; see the module docstring.
    ``audio`` None and ``video_audio``: the video file's own audio track, if it has one
    (a lab recording with the room's sound), aligned with its frames.
    ``drill(frame_index, launcher)`` is called after each frame is sent (fault drills:
    kill a node mid-replay and check the replay still completes)."""
    video = Path(video)
    out = Path(out_dir)
    # Open (and check) the inputs before any process starts or any folder is made: a bad
    # file fails fast and leaves nothing behind.
    fps = probe_video(video)["fps"] if not video.is_dir() else settings.source.fps
    fps = fps or settings.source.fps
    total = _count_frames(video)
    if max_frames:
        total = min(total, max_frames) if total else max_frames
    frames = open_path(video, settings.source)
    if audio is None and video_audio and video.is_file():
        from speech.audio import has_audio_track
        if has_audio_track(video):
            audio = video
            log.info("replay: using the audio track of %s", video.name)
    samples = _load_audio(audio) if audio else None
    out.mkdir(parents=True, exist_ok=True)

    nodes = tuple(n for n in (nodes or settings.launcher.nodes) if n != "source")
    if "renderer" not in nodes:
        raise ReplayError(f"replay needs the renderer (nodes given: {', '.join(nodes) or 'none'})")
    overrides = dict(overrides or {})
    overrides.setdefault("launcher", {})["nodes"] = list(nodes)
    annotated = out / "annotated.mp4"
    # The renderer writes the video (on its own thread), at the input's frame rate.
    overrides.setdefault("render", {})["video_path"] = str(annotated.resolve())
    overrides.setdefault("source", {})["fps"] = float(fps)
    settings = apply_overrides(settings, overrides)
    events = out / "events.jsonl"
    launcher = Launcher(settings, config_path, overrides=overrides, nodes=nodes, replay=True,
                        events_path=str(events), log_dir=str(out / "logs"))
    latencies: list[float] = []
    bar = _Progress(total, progress)
    t_start = time.monotonic()
    t0 = t_start
    digest = ""
    sent = done = 0
    try:
        launcher.start()
        launcher.wait_ready()
        client = BusClient(launcher.endpoints, "replay", ("rendered", "control", "event"),
                           ctx=launcher.ctx)
        _wait_subscribed(client)
        t0 = time.monotonic()  # throughput counts frames, not process start-up
        launcher.client.publish(m.Event(kind="info", text=f"replay of {video.name} started",
                                        data={"frames": total, "fps": fps,
                                              "audio": Path(audio).name if audio else None}))
        chunk = int(16000 * settings.replay.audio_chunk_ms / 1000)
        audio_pos, audio_seq = 0, 0
        frame_timeout = settings.replay.frame_timeout_s

        def send_audio_until(t_end: float, final: bool = False) -> None:
            nonlocal audio_pos, audio_seq
            if "speech" not in nodes:
                return
            end = int(round(t_end * 16000))
            while audio_pos < end or final:
                stop = min(end, audio_pos + chunk)
                if samples is not None and audio_pos < len(samples):
                    piece = samples[audio_pos:min(stop, len(samples))]
                    if len(piece) < stop - audio_pos:
                        piece = np.concatenate([piece, np.zeros(stop - audio_pos - len(piece), np.int16)])
                else:
                    piece = np.zeros(max(0, stop - audio_pos), np.int16)
                is_final = final and stop >= end
                client.publish(m.AudioChunk(seq=audio_seq, start_s=audio_pos / 16000,
                                            samples=piece, final=is_final))
                audio_seq += 1
                audio_pos = stop
                if is_final:
                    break

        def collect(block: bool) -> None:
            nonlocal done
            deadline = time.monotonic() + frame_timeout
            while True:
                got = client.recv(50 if block else 0)
                if got is None:
                    if not block:
                        return
                    if time.monotonic() > deadline:
                        raise ReplayError(f"frame {done} of {video} was not rendered within "
                                          f"{frame_timeout:.0f} s (see logs in {out / 'logs'})")
                    continue
                header, msg = got
                if not isinstance(msg, m.Rendered) or msg.frame_id != done:
                    continue
                latencies.append(msg.latency_ms)
                done += 1
                bar.update()
                return

        last_t = 0.0
        try:
            for sf in frames:
                if max_frames and sent >= max_frames:
                    break
                while sent - done >= settings.replay.max_in_flight:
                    collect(block=True)
                t = sent / fps  # media time by frame position: skipped bad frames do not shift audio
                send_audio_until(t + 1.0 / fps)
                client.publish(m.Frame(frame_id=sent, media_time_s=t, image=sf.image,
                                       spacing_mm=sf.spacing_mm, depth_mm=sf.depth_mm,
                                       source_name=video.name, replay=True))
                sent += 1
                last_t = t
                if drill is not None:
                    drill(sent - 1, launcher)
                collect(block=False)
        except SourceError as exc:
            # Whatever was rendered so far is kept; the error names the file and frame.
            log.error("%s", exc)
            launcher.client.publish(m.Event(kind="alert", text=f"replay input failed: {exc}"))
            while done < sent:
                collect(block=True)
            raise
        if sent == 0:
            raise ReplayError(f"{video}: no readable frame")
        send_audio_until(last_t + 1.0 / fps, final=True)
        while done < sent:
            collect(block=True)
        written = _finish_video(client, frame_timeout)
        if written.get("error"):
            raise ReplayError(f"{annotated}: {written['error']}")
        if written.get("frames") != done:
            raise ReplayError(f"{annotated}: {written.get('frames')} frames written, {done} rendered")
        digest = written.get("digest", "")
        launcher.client.publish(m.Event(kind="info", text="replay finished",
                                        data={"frames": done}))
        _wait_for(lambda: launcher.events.last_text == "replay finished", 5.0)
    finally:
        t_end = time.monotonic()
        bar.close()
        try:
            client.close()
        except NameError:
            pass
        launcher.stop()
    wall = t_end - t0
    lat = np.array(latencies) if latencies else np.zeros(1)
    return ReplaySummary(frames=done, fps=fps, wall_s=wall, media_s=done / fps,
                         annotated=str(annotated), events=str(events),
                         events_count=launcher.events.count,
                         latency_ms_p50=float(np.percentile(lat, 50)),
                         latency_ms_p95=float(np.percentile(lat, 95)),
                         startup_s=t0 - t_start,
                         digest=digest)


def _wait_for(cond, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def _finish_video(client: BusClient, timeout_s: float) -> dict:
    """Ask the renderer to close the video; wait for its 'video written' event."""
    client.publish(m.Control(action="finish", target="renderer"))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = client.recv(50)
        if got and isinstance(got[1], m.Event) and got[1].text == "video written":
            return got[1].data
    raise ReplayError(f"the renderer did not finish the video within {timeout_s:.0f} s")


def _wait_subscribed(client: BusClient, timeout_s: float = 10.0) -> None:
    """Our SUB is live once we receive our own ping through the proxy."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        client.publish(m.Control(action="ping", target="replay"))
        got = client.recv(50)
        while got is not None:
            h, msg = got
            if isinstance(msg, m.Control) and msg.action == "ping" and h.source == client.source:
                return
            got = client.recv_nowait()
    raise ReplayError("replay driver could not subscribe to the bus")


def summary_json(s: ReplaySummary) -> str:
    return json.dumps({**s.__dict__, "speed_x_realtime": round(s.speed, 2)})
