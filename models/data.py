"""Reading images and masks from folders (training and seg-eval); pure numpy/OpenCV/PIL.

Masks may be palette PNGs (the palette index is the value), grey PNGs, or binary
0/255 PNGs; an RGB mask whose three channels are equal is read as grey.
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_images(folder: str | Path) -> list[Path]:
    """Image files in ``folder`` sorted by name; clear errors for a missing or empty folder."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"image folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"{str(folder)!r} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {str(folder)!r}")
    return files


def _why_unreadable(path: str | Path) -> str:
    """A reason OpenCV could not read an image file, in words."""
    p = Path(path)
    if not p.exists():
        return "no such file"
    if p.is_dir():
        return "a folder, not an image"
    if p.stat().st_size == 0:
        return "the file is empty"
    try:
        with Image.open(p) as im:
            im.load()
    except Exception as exc:  # PIL's own words for what is wrong with it
        return f"not a readable image ({exc})"
    return "a format OpenCV cannot decode"


def read_image(path: str | Path) -> np.ndarray:
    """An image as uint8, (H, W) grey or (H, W, 3|4) BGR(A), as stored."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # the reason is ours
    try:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if img is None:
        raise ValueError(f"cannot read image {str(path)!r}: {_why_unreadable(path)}")
    if img.dtype == np.uint16:  # 16-bit scans: keep the top byte
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ValueError(f"image {str(path)!r} has unsupported dtype {img.dtype}")
    return img


def read_grey(path: str | Path) -> np.ndarray:
    """An image as uint8 grey (H, W)."""
    return to_grey(read_image(path), name=str(path))


def to_grey(img: np.ndarray, name: str = "image") -> np.ndarray:
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] == 1:
        return img[..., 0]
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"{name} has shape {img.shape}: expected (H, W), (H, W, 3) or (H, W, 4)")


def read_mask(path: str | Path) -> np.ndarray:
    """A label mask as integer values (H, W): palette index, grey value, or 255 for a set
    pixel of a 1-bit mask."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.array(im)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read mask {str(path)!r}: {exc}") from exc
    if mode == "1":
        return arr.astype(np.uint8) * 255
    if mode in ("P", "L", "I", "I;16", "I;16B", "I;16L", "F"):
        return arr.astype(np.int32) if arr.dtype != np.uint8 else arr
    if mode == "LA":
        return arr[..., 0]
    if mode in ("RGB", "RGBA"):
        rgb = arr[..., :3]
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return rgb[..., 0]
        raise ValueError(f"mask {str(path)!r} is a colour (RGB) image: save it as a palette "
                         "or grey PNG whose values are the class values")
    raise ValueError(f"mask {str(path)!r} has unsupported image mode {mode!r}")


def find_mask(mask_dir: Path, image_path: Path) -> Path:
    """The mask with the same name (or stem, any image suffix) as the image."""
    same = mask_dir / image_path.name
    if same.exists():
        return same
    for suf in IMAGE_SUFFIXES:
        p = mask_dir / (image_path.stem + suf)
        if p.exists():
            return p
    raise FileNotFoundError(f"no mask for image {image_path.name!r} in {str(mask_dir)!r} "
                            f"(expected {image_path.stem}.png or the same file name)")
