"""The live browser view: HTTP endpoints, the MJPEG stream, and the page in headless Chromium."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from ar.overlay import render_monitor
from ar.settings import RenderSettings
from ar.testframes import synthetic_scene
from ar.web import BOUNDARY, WebView, encode_jpeg

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def frame_img() -> np.ndarray:
    frame, seg, state = synthetic_scene()
    return render_monitor(frame, seg, state, 100.05, RenderSettings())


def _get(url: str, timeout: float = 5.0) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


def test_endpoints_serve_frame_and_status(frame_img):
    with WebView() as web:
        assert web.url.startswith("http://127.0.0.1:")
        web.publish(frame_img, {"nodes": {"segmentation": "online"}, "fps": 20})
        code, ctype, body = _get(web.url)
        assert code == 200 and "text/html" in ctype and b"NOT FOR CLINICAL USE" in body
        code, ctype, body = _get(web.url + "frame.jpg")
        assert ctype == "image/jpeg"
        got = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert got.shape == frame_img.shape
        assert np.abs(got.astype(int) - frame_img).mean() < 4  # the same picture, JPEG-coded
        status = json.loads(_get(web.url + "status.json")[2])
        assert status["nodes"] == {"segmentation": "online"} and status["frame_seq"] == 1
        with pytest.raises(urllib.error.HTTPError) as e:
            _get(web.url + "nothing")
        assert e.value.code == 404


def test_mjpeg_stream_delivers_new_frames(frame_img):
    with WebView() as web:
        web.publish(frame_img)
        with urllib.request.urlopen(web.url + "stream.mjpg", timeout=5) as r:
            assert r.headers["Content-Type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"

            def read_part() -> bytes:
                line = r.readline()
                while line.strip() != f"--{BOUNDARY}".encode():
                    line = r.readline()
                headers = {}
                while (line := r.readline().strip()):
                    k, v = line.decode().split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                return r.read(int(headers["content-length"]))

            first = read_part()
            assert first[:2] == b"\xff\xd8"
            marked = frame_img.copy()
            marked[:100, :100] = (0, 0, 255)
            web.publish(marked)
            second = cv2.imdecode(np.frombuffer(read_part(), np.uint8), cv2.IMREAD_COLOR)
            assert (second[10:90, 10:90, 2] > 200).all()


def test_stop_ends_open_streams_promptly(frame_img):
    web = WebView().start()
    web.publish(frame_img)
    r = urllib.request.urlopen(web.url + "stream.mjpg", timeout=5)
    r.readline()
    t0 = time.monotonic()
    web.stop()
    assert time.monotonic() - t0 < 3.0
    r.close()


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="localhost only"):
        WebView(host="0.0.0.0")
    with WebView() as web, pytest.raises(ValueError, match="not a JPEG"):
        web.publish(b"GIF89a....")
    with pytest.raises(ValueError, match="uint8"):
        encode_jpeg(np.zeros((4, 4), np.float32))


def _chromium(args: list[str], url: str, tmp_path) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")
def test_page_loads_in_headless_chromium_and_shows_the_frame(frame_img, tmp_path):
    with WebView() as web:
        web.publish(frame_img, {"nodes": {"segmentation": "online"}})
        # the page's script writes the loaded image's natural size into the title
        dom = _chromium(["--dump-dom"], web.url, tmp_path)
        assert "<title>AR assistant frame 1280x720</title>" in dom.stdout, dom.stderr[-2000:]
        shot = tmp_path / "page.png"
        _chromium([f"--screenshot={shot}", "--window-size=1280,800"], web.url, tmp_path)
        page = cv2.imread(str(shot))
        assert page is not None, "no screenshot written"
        # the rendered frame's ultrasound area must be found in the page's pixels
        crop = frame_img[200:500, 300:700]
        res = cv2.matchTemplate(page, crop, cv2.TM_CCOEFF_NORMED)
        assert res.max() > 0.9, res.max()
