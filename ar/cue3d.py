"""A 3D needle-depth cue: the needle, its projected path and the target plane in 3D, with a
ring around the path's crossing of the plane that fills as the tip nears the plane.

Built from open3d geometry and rendered on the CPU with
``open3d.t.geometry.RaycastingScene`` (open3d's OffscreenRenderer needs a GPU/Vulkan and
hangs on these machines), shaded here from the hit normals and depth. open3d is imported
on first use, not at import.

Scene coordinates are millimetres: the target plane is y = 0 (y up, toward the skin), the
needle's path crosses it at the origin, and the tip sits ``to_target_mm`` above it (below
it, negative, once past). Distances beyond ``range_mm`` are drawn at ``range_mm``.
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# Okabe-Ito, BGR
PLANE_BGR = (150, 40, 150)  # dark magenta, as the plane in the monitor view but quieter
NEEDLE_BGR = (235, 235, 235)
PATH_BGR = (160, 160, 160)
TRACK_BGR = (90, 90, 90)
FILL_BGR = (233, 180, 86)  # sky blue: on the way
AT_PLANE_BGR = (115, 158, 0)  # bluish green: at the plane
PAST_BGR = (0, 94, 213)  # vermillion: past the plane
AT_PLANE_MM = 1.0  # within this of the plane counts as "at the plane"


@dataclass(frozen=True)
class CueInputs:
    """What the cue shows; quantised so that a cache of rendered cues stays small."""

    to_target_mm: float | None  # None: no needle / no target: plane and empty ring only
    angle_deg: float = 30.0  # needle shaft from horizontal
    range_mm: float = 20.0  # the ring is empty at this distance and full at the plane
    mirror: bool = False  # the needle comes from the right of the image

    @staticmethod
    def quantised(to_target_mm: float | None, angle_deg: float | None, range_mm: float = 20.0,
                  mirror: bool = False) -> "CueInputs":
        tt = None if to_target_mm is None or not math.isfinite(to_target_mm) else round(to_target_mm * 4) / 4
        ang = 30.0 if angle_deg is None or not math.isfinite(angle_deg) else round(abs(angle_deg) / 2) * 2
        return CueInputs(tt, float(ang), float(range_mm), bool(mirror))


def fill_fraction(to_target_mm: float | None, range_mm: float = 20.0) -> float:
    """How full the ring is: 0 at ``range_mm`` or more above the plane, 1 at or past it."""
    if to_target_mm is None:
        return 0.0
    if range_mm <= 0:
        raise ValueError(f"range_mm must be positive, got {range_mm}")
    return float(np.clip(1.0 - to_target_mm / range_mm, 0.0, 1.0))


def cue_colour(to_target_mm: float | None) -> tuple[int, int, int]:
    if to_target_mm is None:
        return FILL_BGR
    if to_target_mm < -AT_PLANE_MM:
        return PAST_BGR
    if to_target_mm <= AT_PLANE_MM:
        return AT_PLANE_BGR
    return FILL_BGR


# ----------------------------------------------------------------------------- geometry

def tube_arc_mesh(radius: float, tube: float, start_rad: float, sweep_rad: float,
                  n_u: int = 64, n_v: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and triangles of a torus segment in the x-z plane (y up), closed at its ends
    only by being a tube (the open ends are not seen at this scale)."""
    n_u = max(2, int(n_u * max(sweep_rad, 0.05) / (2 * np.pi)) + 1)
    u = start_rad + np.linspace(0.0, sweep_rad, n_u)
    v = np.linspace(0.0, 2 * np.pi, n_v, endpoint=False)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    r = radius + tube * np.cos(vv)
    verts = np.stack([r * np.cos(uu), tube * np.sin(vv), r * np.sin(uu)], axis=-1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n_u - 1), np.arange(n_v), indexing="ij")
    a = i * n_v + j
    b = i * n_v + (j + 1) % n_v
    c, d = a + n_v, b + n_v
    tris = np.stack([np.stack([a, c, b], -1), np.stack([b, c, d], -1)], axis=2).reshape(-1, 3)
    return verts.astype(np.float32), tris.astype(np.int32)


def _cylinder(o3d, p0: np.ndarray, p1: np.ndarray, radius: float):
    """An open3d cylinder from p0 to p1 (legacy mesh)."""
    d = p1 - p0
    length = float(np.linalg.norm(d))
    mesh = o3d.geometry.TriangleMesh.create_cylinder(radius=radius, height=max(length, 1e-3),
                                                     resolution=16, split=1)
    # open3d's cylinder is along z, centred at the origin: rotate z onto d, move to the middle
    z = np.array([0.0, 0.0, 1.0])
    dn = d / max(length, 1e-9)
    axis = np.cross(z, dn)
    s, c = np.linalg.norm(axis), float(np.dot(z, dn))
    if s < 1e-9:
        rot = np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    else:
        k = axis / s
        kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        rot = np.eye(3) + s * kx + (1 - c) * kx @ kx
    mesh.rotate(rot, center=(0, 0, 0))
    mesh.translate((p0 + p1) / 2)
    return mesh


def cue_meshes(inputs: CueInputs) -> list[tuple[object, tuple[int, int, int]]]:
    """The cue's open3d meshes (legacy TriangleMesh) with their BGR colours."""
    import open3d as o3d

    rng = inputs.range_mm
    ang = math.radians(float(np.clip(inputs.angle_deg, 10.0, 80.0)))
    d = np.array([math.cos(ang), -math.sin(ang), 0.0])  # shaft direction, going deeper
    out: list = []
    plane = o3d.geometry.TriangleMesh.create_box(width=36.0, height=0.4, depth=36.0)
    plane.translate((-18.0, -0.4, -18.0))
    out.append((plane, PLANE_BGR))
    ring_r, tube = 7.0, 0.9
    frac = fill_fraction(inputs.to_target_mm, rng)
    if frac < 0.999:  # the empty part of the ring (the track)
        v, t = tube_arc_mesh(ring_r, tube * 0.7, -np.pi / 2 + 2 * np.pi * frac, 2 * np.pi * (1 - frac))
        out.append((_mesh(o3d, v + (0, 0.5, 0), t), TRACK_BGR))
    if frac > 0.001:  # the filled part, clockwise from the front
        v, t = tube_arc_mesh(ring_r, tube, -np.pi / 2, 2 * np.pi * frac)
        out.append((_mesh(o3d, v + (0, 0.5, 0), t), cue_colour(inputs.to_target_mm)))
    if inputs.to_target_mm is not None:
        # the tip is drawn at most 12 mm above / 6 mm below the plane to stay in view;
        # the ring and the caption carry the true distance
        tt = float(np.clip(inputs.to_target_mm, -6.0, 12.0))
        tip = -d * (tt / math.sin(ang))  # the path from the tip meets the plane at the origin
        shaft0 = tip - d * 22.0
        out.append((_cylinder(o3d, shaft0, tip, 0.6), NEEDLE_BGR))
        sphere = o3d.geometry.TriangleMesh.create_sphere(radius=1.3, resolution=12)
        sphere.translate(tip)
        out.append((sphere, cue_colour(inputs.to_target_mm)))
        if tt > 0.5:  # dashed projected path from the tip to the plane
            n = max(1, int(tt / math.sin(ang) / 2.5))
            for i in range(n):
                a = tip + d * (tt / math.sin(ang)) * (i / n)
                b = tip + d * (tt / math.sin(ang)) * ((i + 0.5) / n)
                out.append((_cylinder(o3d, a, b, 0.25), PATH_BGR))
    return out


def _mesh(o3d, verts: np.ndarray, tris: np.ndarray):
    m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(verts.astype(np.float64)),
                                  o3d.utility.Vector3iVector(tris))
    return m


# ----------------------------------------------------------------------------- rendering

@functools.lru_cache(maxsize=4)
def _rays(size_px: int):
    import open3d as o3d

    return o3d.t.geometry.RaycastingScene.create_rays_pinhole(
        fov_deg=40.0, center=[-4.0, 4.0, 0.0], eye=[16.0, 26.0, 46.0], up=[0.0, 1.0, 0.0],
        width_px=size_px, height_px=size_px)


def render_cue(inputs: CueInputs, size_px: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast the cue: (BGR uint8 (S, S, 3), alpha uint8 (S, S): 255 where geometry was hit)."""
    import open3d as o3d

    if not 16 <= int(size_px) <= 2048:
        raise ValueError(f"size_px must be 16..2048, got {size_px}")
    # All meshes go in as one triangle soup with a colour per triangle: one BVH build and
    # no per-mesh tensor conversion (that overhead was half the time of a 160 px cue).
    verts, tris, tri_colour = [], [], []
    offset = 0
    for mesh, colour in cue_meshes(inputs):
        v = np.asarray(mesh.vertices, np.float32)
        t = np.asarray(mesh.triangles, np.uint32)
        verts.append(v)
        tris.append(t + offset)
        tri_colour.append(np.broadcast_to(np.asarray(colour, np.float32), (len(t), 3)))
        offset += len(v)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.concatenate(verts)), o3d.core.Tensor(np.concatenate(tris)))
    lut = np.concatenate(tri_colour + [np.zeros((1, 3), np.float32)])
    ans = scene.cast_rays(_rays(int(size_px)))
    t_hit = ans["t_hit"].numpy()
    pid = ans["primitive_ids"].numpy().astype(np.int64)
    normals = ans["primitive_normals"].numpy()
    hit = np.isfinite(t_hit)
    base = lut[np.where(hit, pid, len(lut) - 1)]
    # two-sided Lambert from a light over the viewer's shoulder, and depth fog for shape
    light = np.array([0.3, 0.8, 0.5], np.float32)
    light /= np.linalg.norm(light)
    lam = np.abs(normals @ light)
    t = np.where(hit, t_hit, 0)
    fog = 1.0 - 0.35 * np.clip((t - 30.0) / 40.0, 0, 1)
    shade = (0.35 + 0.65 * lam) * fog
    img = np.clip(base * shade[..., None], 0, 255).astype(np.uint8)
    img[~hit] = 0
    # the pinhole rays' image comes out rotated half a turn from the screen's convention
    return np.ascontiguousarray(img[::-1, ::-1]), np.ascontiguousarray(np.where(hit, 255, 0).astype(np.uint8)[::-1, ::-1])


def cue_caption(to_target_mm: float | None) -> str:
    """The words under the cue, from the exact distance (the picture is quantised)."""
    tt = to_target_mm
    if tt is None or not math.isfinite(tt):
        return "no needle"
    if tt > AT_PLANE_MM:
        return f"{tt:.1f} mm to plane"
    return "at plane" if tt >= -AT_PLANE_MM else f"{-tt:.1f} mm past"


class CueRenderer:
    """Renders cues on demand with two small caches: the ray-cast picture only changes when
    its quantised inputs (0.25 mm, 2 degrees) change, and its caption (from the exact
    distance, as the rest of the screen shows it) when the words change."""

    def __init__(self, size_px: int = 160, range_mm: float = 20.0, cache_size: int = 64):
        self.size_px, self.range_mm = int(size_px), float(range_mm)
        self._picture = functools.lru_cache(maxsize=cache_size)(self._render_uncached)
        self._captioned = functools.lru_cache(maxsize=cache_size)(self._captioned_uncached)

    def _render_uncached(self, inputs: CueInputs) -> tuple[np.ndarray, np.ndarray]:
        img, alpha = render_cue(inputs, self.size_px)
        if inputs.mirror:  # geometry is symmetric but for the needle's side: flip the picture
            img, alpha = np.ascontiguousarray(img[:, ::-1]), np.ascontiguousarray(alpha[:, ::-1])
        img.setflags(write=False)
        alpha.setflags(write=False)
        return img, alpha

    def _captioned_uncached(self, inputs: CueInputs, text: str, colour: tuple) -> tuple[np.ndarray, np.ndarray]:
        pic, pa = self._picture(inputs)
        img, alpha = pic.copy(), pa.copy()
        self._caption(img, alpha, text, colour)
        img.setflags(write=False)
        alpha.setflags(write=False)
        return img, alpha

    def _caption(self, img: np.ndarray, alpha: np.ndarray, text: str, colour: tuple) -> None:
        import cv2

        s = self.size_px / 160
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45 * s, 1)
        x, y = (self.size_px - tw) // 2, self.size_px - int(6 * s)
        cv2.rectangle(img, (x - 3, y - th - 3), (x + tw + 3, y + 4), (0, 0, 0), -1)
        cv2.rectangle(alpha, (x - 3, y - th - 3), (x + tw + 3, y + 4), 255, -1)
        cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * s, colour, 1, cv2.LINE_AA)

    def render(self, to_target_mm: float | None, angle_deg: float | None = None,
               mirror: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The cue (cached, read-only arrays); ``mirror`` when the needle enters from the
        image's right."""
        inputs = CueInputs.quantised(to_target_mm, angle_deg, self.range_mm, mirror)
        tt = inputs.to_target_mm if inputs.to_target_mm is None else float(to_target_mm)
        return self._captioned(inputs, cue_caption(tt), cue_colour(tt))


def composite(dst: np.ndarray, img: np.ndarray, alpha: np.ndarray, x: int, y: int,
              opacity: float = 0.9) -> None:
    """Draw ``img`` where ``alpha`` is set onto ``dst`` at (x, y), clipped to ``dst``."""
    h, w = img.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, dst.shape[1]), min(y + h, dst.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    src = img[y0 - y:y1 - y, x0 - x:x1 - x].astype(np.float32)
    a = alpha[y0 - y:y1 - y, x0 - x:x1 - x, None].astype(np.float32) * (opacity / 255.0)
    roi = dst[y0:y1, x0:x1]
    roi[:] = (roi * (1 - a) + src * a + 0.5).astype(np.uint8)
