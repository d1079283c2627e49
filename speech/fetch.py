"""``assistant models fetch vosk-en``: download the official small English Vosk model.

The archive is verified against a pinned SHA-256 before anything is unpacked.
The Vosk site publishes no checksums; the pin below is the value recorded, for the
same URL and the same byte size (41,205,931), by several independent public projects
(see docs/SPEECH.md). It could not be checked from this machine (no internet). A
mismatch is refused, never warned about. ``--sha256 ""`` disables the pin (trust on
first use): the hash of that download is then written next to the model
(``<dest>/ARCHIVE.sha256``) and later downloads must match it.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import socket
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from assistant.paths import file_in_the_way

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    url: str
    sha256: str
    size_bytes: int
    folder: str  # top-level folder inside the zip


MODELS = {
    "vosk-en": ModelSpec(
        "vosk-en",
        "https://alphacephei.com/vosk/models/vosk-model-small-en-us-0.15.zip",
        "30f26242c4eb449f948e42cb302dd7a686cb29a3423a8367f99ff41780942498",
        41_205_931,
        "vosk-model-small-en-us-0.15"),
}

DEFAULT_DEST = Path("models") / "vosk"


class FetchError(RuntimeError):
    """Download or verification failed; the message says what and where."""


def download(url: str, out: Path, timeout_s: float = 30.0) -> str:
    """Stream ``url`` into ``out``; returns the SHA-256 of the bytes written."""
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r, open(out, "wb") as f:
            while True:
                block = r.read(1 << 20)
                if not block:
                    break
                h.update(block)
                f.write(block)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        why = ("the file cannot be read" if url.startswith("file:")
               else "no internet connection, or the server is down")
        raise FetchError(f"cannot reach {url} ({reason}): {why}. Download the archive "
                         f"elsewhere and unpack it into {out.parent.parent}, or set "
                         f"speech.vosk_model_dir to a model folder") from exc
    return h.hexdigest()


def fetch(name: str, dest: Path = DEFAULT_DEST, url: str | None = None,
          sha256: str | None = None, timeout_s: float = 30.0) -> Path:
    """Download, verify and unpack model ``name`` under ``dest``; returns the model dir."""
    if name not in MODELS:
        raise FetchError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    spec = MODELS[name]
    url = url or spec.url
    pinned = spec.sha256 if sha256 is None else sha256
    dest = Path(dest)
    in_the_way = file_in_the_way(dest)
    if in_the_way is not None:
        raise FetchError(f"--dest {dest}: {in_the_way} is a file, not a folder")
    model_dir = dest / spec.folder
    record = dest / f"{spec.folder}.zip.sha256"
    if not pinned and record.exists():
        pinned = record.read_text().split()[0]  # trust on first use: later fetches must match
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as tmp:
        zpath = Path(tmp) / f"{spec.folder}.zip"
        log.info("downloading %s", url)
        digest = download(url, zpath, timeout_s)
        if pinned and digest != pinned:
            raise FetchError(f"{url}: SHA-256 {digest} does not match the pinned {pinned}; "
                             f"refusing to unpack")
        try:
            with zipfile.ZipFile(zpath) as z:
                names = z.namelist()
                if any(n.startswith("/") or ".." in Path(n).parts for n in names):
                    raise FetchError(f"{url}: archive has unsafe paths")
                z.extractall(tmp)
        except zipfile.BadZipFile as exc:
            raise FetchError(f"{url}: not a zip archive ({exc})") from exc
        src = Path(tmp) / spec.folder
        if not (src / "am").is_dir():
            raise FetchError(f"{url}: archive has no {spec.folder}/am folder; not a Vosk model")
        if model_dir.exists():
            shutil.rmtree(model_dir)
        shutil.move(str(src), str(model_dir))
    record.write_text(f"{digest}  {spec.folder}.zip\n")
    log.info("model ready in %s (sha256 %s)", model_dir, digest)
    return model_dir


def main(argv: list[str] | None = None) -> int:
    """CLI: ``fetch vosk-en [--dest DIR]``. Exit 0 ok, 1 download/verification failed."""
    ap = argparse.ArgumentParser(prog="assistant models fetch",
                                 description="Download a speech model (needs internet).")
    ap.add_argument("model", choices=sorted(MODELS), metavar="MODEL",
                    help=f"one of: {', '.join(sorted(MODELS))}")
    ap.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    ap.add_argument("--url", help="another mirror of the same archive")
    ap.add_argument("--sha256", help="expected SHA-256 ('' = record on first download)")
    ap.add_argument("--timeout-s", type=float, default=30.0)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fetch"]:  # called as "assistant models fetch vosk-en"
        argv = argv[1:]
    args = ap.parse_args(argv)
    try:
        path = fetch(args.model, args.dest, args.url, args.sha256, args.timeout_s)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.model}: {path}  (set speech.engine: vosk, speech.vosk_model_dir: {path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
