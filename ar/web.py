"""Live browser view on localhost: MJPEG over HTTP from the standard library.

The renderer node calls :meth:`WebView.publish` with each rendered view (a JPEG or a BGR
image) and a status dict; browsers on the same machine open ``http://127.0.0.1:PORT/``.

Endpoints:

* ``/``             the page: the live stream and the status, refreshed every second;
* ``/stream.mjpg``  ``multipart/x-mixed-replace`` JPEG stream (newest frame only: a slow
  browser skips frames, nothing queues);
* ``/frame.jpg``    the newest frame, once;
* ``/status.json``  the newest status dict, plus ``frame_seq`` and ``age_s``.

The server binds 127.0.0.1 only (patient images never leave the machine) and runs in
daemon threads; :meth:`WebView.stop` ends it and every open stream within a second.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

log = logging.getLogger(__name__)

BOUNDARY = "usraframe"

INDEX_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>AR assistant (waiting)</title>
<style>
 body { background:#181818; color:#eee; font-family:sans-serif; margin:0; }
 header { padding:6px 12px; background:#000; display:flex; gap:24px; align-items:center; }
 .ncu { color:#ffc800; font-weight:bold; }
 #live { display:block; max-width:100vw; max-height:calc(100vh - 40px); margin:0 auto; }
 #status { font-size:13px; color:#bbb; }
</style></head>
<body>
<header><span class="ncu">NOT FOR CLINICAL USE</span><span id="status">connecting...</span></header>
<img id="live" alt="live view" src="/frame.jpg">
<script>
 // The first frame comes as a single JPEG (the page's load completes with a picture);
 // then the image switches to the MJPEG stream, which browsers render part by part.
 const img = document.getElementById('live');
 let streaming = false;
 function loaded() {
   document.title = 'AR assistant frame ' + img.naturalWidth + 'x' + img.naturalHeight;
   if (!streaming) { streaming = true; setTimeout(() => { img.src = '/stream.mjpg'; }, 200); }
 }
 img.addEventListener('load', loaded);
 if (img.complete && img.naturalWidth > 0) loaded();  // loaded before this script ran
 img.addEventListener('error', () => { setTimeout(() => { img.src = '/frame.jpg?' + Date.now(); }, 1000); });
 async function poll() {
   try {
     const r = await fetch('/status.json', {cache: 'no-store'});
     const s = await r.json();
     const nodes = Object.entries(s.nodes || {}).map(([k, v]) => k + ': ' + v).join(', ');
     document.getElementById('status').textContent =
       'frame ' + s.frame_seq + ' (' + (s.age_s ?? 0).toFixed(1) + ' s ago)' + (nodes ? ' | ' + nodes : '');
   } catch (e) { document.getElementById('status').textContent = 'server not reachable'; }
 }
 setInterval(poll, 1000); poll();
</script>
</body></html>
"""


def encode_jpeg(bgr: np.ndarray, quality: int = 80) -> bytes:
    import cv2  # cheap, already loaded by the renderer; kept local so this module imports alone

    if not isinstance(bgr, np.ndarray) or bgr.dtype != np.uint8 or bgr.ndim not in (2, 3):
        raise ValueError(f"image must be a uint8 (H, W) or (H, W, 3) array, got "
                         f"{getattr(bgr, 'dtype', type(bgr).__name__)} {getattr(bgr, 'shape', '')}")
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {bgr.shape}")
    return buf.tobytes()


class _Latest:
    """The newest frame and status, with a condition to wake streams on a new frame."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jpeg: bytes | None = None
        self.status: dict = {}
        self.seq = 0
        self.t_mono = 0.0
        self.stopping = False


class _Handler(BaseHTTPRequestHandler):
    server_version = "usra-ar/1"
    latest: _Latest  # set on the subclass made per server

    def log_message(self, fmt, *args):  # route the stdlib's stderr lines to logging
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (stdlib name)
        path = self.path.split("?", 1)[0]
        lt = self.latest
        if path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", INDEX_HTML.encode())
        elif path == "/status.json":
            with lt.cond:
                body = dict(lt.status)
                body["frame_seq"] = lt.seq
                body["age_s"] = (time.monotonic() - lt.t_mono) if lt.seq else None
            self._send(200, "application/json", json.dumps(body, default=str).encode())
        elif path == "/frame.jpg":
            with lt.cond:
                if lt.jpeg is None:
                    lt.cond.wait_for(lambda: lt.jpeg is not None or lt.stopping, timeout=5.0)
                jpeg = lt.jpeg
            if jpeg is None:
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame yet")
            else:
                self._send(200, "image/jpeg", jpeg)
        elif path == "/stream.mjpg":
            self._stream()
        else:
            self._send(404, "text/plain", f"not found: {path}".encode())

    def _stream(self) -> None:
        lt = self.latest
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        sent = 0
        try:
            while True:
                with lt.cond:
                    # wake at least once a second so a stopping server ends the stream
                    lt.cond.wait_for(lambda: lt.seq != sent or lt.stopping, timeout=1.0)
                    if lt.stopping:
                        return
                    if lt.seq == sent or lt.jpeg is None:
                        continue
                    jpeg, sent = lt.jpeg, lt.seq
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                 f"Content-Length: {len(jpeg)}\r\n\r\n".encode())
                self.wfile.write(jpeg)
                self.wfile.write(b"\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            log.debug("stream client %s went away", self.address_string())


class WebView:
    """MJPEG server on 127.0.0.1:``port`` (0 = any free port, see :attr:`port`)."""

    def __init__(self, port: int = 0, jpeg_quality: int = 80, host: str = "127.0.0.1"):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the browser view binds to localhost only, got host {host!r}")
        if not 0 <= int(port) <= 65535:
            raise ValueError(f"port must be 0..65535, got {port!r}")
        self._host, self._port_req, self.jpeg_quality = host, int(port), int(jpeg_quality)
        self._latest = _Latest()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("WebView is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}/"

    def start(self) -> "WebView":
        if self._server is not None:
            return self
        handler = type("Handler", (_Handler,), {"latest": self._latest})
        self._server = ThreadingHTTPServer((self._host, self._port_req), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ar-web",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        log.info("browser view on %s", self.url)
        return self

    def publish(self, jpeg_or_bgr: bytes | np.ndarray, status: dict | None = None) -> None:
        """Make this the newest frame (JPEG bytes, or a BGR/grey image to encode)."""
        jpeg = jpeg_or_bgr if isinstance(jpeg_or_bgr, (bytes, bytearray)) \
            else encode_jpeg(jpeg_or_bgr, self.jpeg_quality)
        if not bytes(jpeg[:2]) == b"\xff\xd8":
            raise ValueError("publish: bytes given are not a JPEG (no SOI marker)")
        lt = self._latest
        with lt.cond:
            lt.jpeg = bytes(jpeg)
            if status is not None:
                lt.status = dict(status)
            lt.seq += 1
            lt.t_mono = time.monotonic()
            lt.cond.notify_all()

    def stop(self) -> None:
        lt = self._latest
        with lt.cond:
            lt.stopping = True
            lt.cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._server = self._thread = None

    def __enter__(self) -> "WebView":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
