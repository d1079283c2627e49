import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def wait_for(cond, timeout_s: float = 10.0, interval_s: float = 0.01, what: str = "condition"):
    """Poll ``cond`` until it is truthy or the timeout passes (then fail the test)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval_s)
    v = cond()
    if not v:
        pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
    return v


def listen_patched(settings, x, classify, reply: bool = False) -> tuple[list, list]:
    """The heard commands and the utterance log of a speech listener fed ``x`` in 20 ms
    chunks, with the kws classifier's answers passed through ``classify(result) ->
    result`` (to make it unsure or sure of something); ``reply``: a yes/no answer is
    awaited all along."""
    from speech import kws
    from speech.audio import chunks
    from speech.listener import CommandListener
    real = kws.KwsRecognizer.classify
    mp = pytest.MonkeyPatch()
    mp.setattr(kws.KwsRecognizer, "classify", lambda self, *a, **k: classify(real(self, *a, **k)))
    try:
        lis = CommandListener(settings)
        if reply:
            lis.expect_reply(until_s=1e9)
        out = []
        for c, t in chunks(x, 20):
            out += lis.feed(c, t)
        return out + lis.flush(), list(lis.log)
    finally:
        mp.undo()


def video_frames(path) -> list:
    """Every frame OpenCV can decode from the video file ``path`` (BGR arrays)."""
    from assistant.sources import read_video_frames

    return read_video_frames(path)


def write_media(path, frames: list, fps: float, audio16k=None, rate: int = 44100,
                layout: str = "stereo") -> None:
    """A video file as a recorder writes one (PyAV: MPEG-4 video, and an AAC audio track
    at ``rate`` Hz ``layout`` made from the 16 kHz mono int16 ``audio16k``, if given)."""
    import av
    import numpy as np

    c = av.open(str(path), "w")
    vs = c.add_stream("mpeg4", rate=int(fps))
    vs.width, vs.height, vs.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
    a = c.add_stream("aac", rate=rate, layout=layout) if audio16k is not None else None
    for img in frames:
        for pkt in vs.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
            c.mux(pkt)
    for pkt in vs.encode():
        c.mux(pkt)
    if a is not None:
        res = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        x = np.asarray(audio16k, np.int16)
        pieces = [x[i:i + 1024] for i in range(0, len(x), 1024)] + [None]
        for piece in pieces:
            fr = None
            if piece is not None:
                fr = av.AudioFrame.from_ndarray(piece.reshape(1, -1), format="s16", layout="mono")
                fr.sample_rate = 16000
            for f in res.resample(fr):
                for pkt in a.encode(f):
                    c.mux(pkt)
        for pkt in a.encode():
            c.mux(pkt)
    c.close()


@pytest.fixture
def shared_data():
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture(autouse=True)
def _private_data_home(tmp_path, monkeypatch):
    """Session records of tests go to a temporary folder, never the user's."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


def copy_shipped_model(folder, change=None):
    """The shipped model, its u8 and s7 variants and its manifest copied into ``folder`` as
    m.onnx (the manifest passed through ``change`` first, if given); returns m.onnx's path."""
    import json
    import shutil

    from models.segmenter import DEFAULT_MODEL
    model = Path(folder) / "m.onnx"
    shutil.copy(DEFAULT_MODEL, model)
    manifest = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    for variant in ("u8_variant", "s7_variant"):
        shutil.copy(DEFAULT_MODEL.parent / manifest[variant]["file"], folder)
    if change is not None:
        change(manifest)
    model.with_suffix(".json").write_text(json.dumps(manifest))
    return model
