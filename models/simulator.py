"""A fast, physically motivated B-mode simulator of the PECS II view (decision support
research tool, not for clinical use).

How a frame is made (all vectorised numpy/OpenCV, about 20-40 ms for 542x562):

1. Geometry in millimetres: layer boundaries (skin, fat, pectoralis major, pectoralis
   minor, serratus anterior) are smooth curves of the lateral position; ribs are
   ellipses below serratus, the pleura a line between and below them; the
   thoracoacromial artery a pulsing disc in the interpectoral plane with the lateral
   pectoral nerve beside it; the needle a straight in-plane shaft; local anaesthetic a
   lens that opens the plane between pectoralis minor and serratus.
2. From the geometry: a label map (indices of :data:`models.classes.CLASSES`), an
   echogenicity (scatterer amplitude) map with tissue textures, a map of specular
   reflectors (fascia, rib cortex, pleura, needle with reverberations), and an
   attenuation map.
3. Echo formation: complex scatterers (random phase: sub-wavelength positions) times
   echogenicity plus the specular reflectors, times the two-way transmission (cumulative
   excess attenuation relative to what the time-gain compensation expects, so bone
   shadows and fluid enhances), convolved with the pulse-echo point-spread function.
   The PSF is a Gaussian-modulated cosine axially and a Gaussian laterally; we
   convolve with its baseband (IQ-demodulated) form, whose magnitude is the envelope
   of the RF echo, so the carrier need not be sampled at our coarse pixel spacing.
   Then electronic noise (grows with depth because TGC amplifies it), gain, and log
   compression to 8 bits.

Units: ``spacing_mm`` is mm per pixel (square pixels); ``depth_mm`` = rows x spacing.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from models.classes import CLASS_INDEX, CLASSES

log = logging.getLogger(__name__)

DEFAULT_SIZE = (542, 562)  # (rows, cols) of the demo/replay videos
SPEED_OF_SOUND_MM_PER_US = 1.54

_BG = 0
_NERVE = CLASS_INDEX["nerve"]
_VESSEL = CLASS_INDEX["vessel"]
_FASCIA = CLASS_INDEX["fascia"]
_PMAJ = CLASS_INDEX["pec_major"]
_PMIN = CLASS_INDEX["pec_minor"]
_SERR = CLASS_INDEX["serratus"]
_BONE = CLASS_INDEX["bone"]
_PLEURA = CLASS_INDEX["pleura"]
_NEEDLE = CLASS_INDEX["needle"]


# ----------------------------------------------------------------------------- parameters

@dataclass(frozen=True)
class Curve:
    """depth(x) = base + slope*x + sum a*sin(2 pi x / period + phase), all in mm."""

    base: float
    slope: float = 0.0
    waves: tuple = ()  # ((amplitude_mm, period_mm, phase_rad), ...)

    def __call__(self, x_mm: np.ndarray) -> np.ndarray:
        y = self.base + self.slope * x_mm
        for a, p, ph in self.waves:
            y = y + a * np.sin(2.0 * np.pi * x_mm / p + ph)
        return y


@dataclass(frozen=True)
class Anatomy:
    """The patient: PECS II geometry in tissue coordinates (mm), fixed over a clip."""

    skin_mm: float
    fat_bottom: Curve
    pmaj_bottom_thick: Curve  # pectoralis major thickness
    pmin_thick: Curve
    serr_thick: Curve
    rib_x_mm: tuple  # rib centres (tissue x)
    rib_a_mm: float  # half width
    rib_b_mm: float  # half height
    rib_gap_mm: float  # from serratus bottom to rib top
    artery_x_mm: float
    artery_r_mm: float
    nerve_dx_mm: float | None  # nerve centre relative to artery, None: no nerve seen
    nerve_r_mm: float
    fascia_gain: tuple  # specular amplitude of the 4 fascial lines
    pulse_hz: float
    texture_seed: int


@dataclass(frozen=True)
class NeedleParams:
    """An in-plane needle. ``entry_x_mm`` is where the shaft crosses the skin line (y=0),
    in image mm (may lie outside the image: it then enters through a side border).
    ``direction`` +1 goes right with depth, -1 left. ``visibility`` 0..1 is how well the
    beam catches the shaft (1: fully in plane, small: the beam misses it)."""

    entry_x_mm: float
    angle_deg: float
    length_mm: float
    direction: int = 1
    visibility: float = 1.0

    def tip_mm(self) -> tuple[float, float]:
        a = math.radians(self.angle_deg)
        return (self.entry_x_mm + self.direction * self.length_mm * math.cos(a),
                self.length_mm * math.sin(a))


@dataclass(frozen=True)
class SimParams:
    """What a frame shows. ``None`` fields are drawn from the seed."""

    size: tuple = DEFAULT_SIZE  # (rows, cols)
    depth_mm: float | None = None  # 20..60
    gain_db: float | None = None
    freq_mhz: float | None = None
    dynamic_range_db: float | None = None
    probe_x_mm: float | None = None  # probe position along the skin (tissue x of col 0)
    time_s: float = 0.0  # for the arterial pulse
    needle: NeedleParams | None | str = "random"  # "random", None (no needle) or params
    la_radius_mm: float = 0.0  # local anaesthetic lens half-width (0: none)
    la_x_mm: float | None = None  # image x of the lens centre (default: the needle tip)
    anatomy: Anatomy | None = None


@dataclass
class SimFrame:
    """One simulated frame and its ground truth."""

    image: np.ndarray  # uint8 (H, W) grey
    labels: np.ndarray  # uint8 (H, W), indices of CLASSES
    spacing_mm: float
    depth_mm: float
    needle: dict  # visible, tip_px, entry_px, angle_deg, visibility, depth_mm
    vessel: dict  # centre_px, radius_px
    target_px: tuple  # a point on the pectoralis minor / serratus plane
    params: dict = field(default_factory=dict)
    fluid: np.ndarray | None = None  # bool (H, W): the injectate pocket, labelled background


# ----------------------------------------------------------------------------- sampling

def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, float)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or numpy Generator, got {type(seed).__name__}")
    return np.random.default_rng(int(seed))


def _waves(rng: np.random.Generator, amp_mm: float) -> tuple:
    return tuple((float(rng.uniform(0.2, 1.0) * amp_mm), float(rng.uniform(25, 90)),
                  float(rng.uniform(0, 2 * np.pi))) for _ in range(2))


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """A random but plausible PECS II anatomy (thicknesses from adult ranges)."""
    slope = float(rng.uniform(-0.12, 0.12))
    skin = float(rng.uniform(1.0, 2.0))
    fat = Curve(skin + float(rng.uniform(2.0, 8.0)), slope, _waves(rng, 1.0))
    pmaj = Curve(float(rng.uniform(6.0, 12.0)), slope * 0.3, _waves(rng, 1.5))
    pmin = Curve(float(rng.uniform(5.0, 9.0)), 0.0, _waves(rng, 1.2))
    serr = Curve(float(rng.uniform(3.5, 7.0)), 0.0, _waves(rng, 0.8))
    spacing = float(rng.uniform(17.0, 24.0))
    first = float(rng.uniform(-5.0, 15.0))
    ribs = tuple(first + spacing * k for k in range(6))
    art_x = float(rng.uniform(12.0, 38.0))
    nerve_dx = float(rng.choice([-1, 1]) * rng.uniform(3.0, 5.0)) if rng.random() < 0.8 else None
    return Anatomy(
        skin_mm=skin, fat_bottom=fat, pmaj_bottom_thick=pmaj, pmin_thick=pmin,
        serr_thick=serr, rib_x_mm=ribs, rib_a_mm=float(rng.uniform(5.0, 7.5)),
        rib_b_mm=float(rng.uniform(2.5, 3.8)), rib_gap_mm=float(rng.uniform(0.3, 1.5)),
        artery_x_mm=art_x, artery_r_mm=float(rng.uniform(1.2, 2.3)),
        nerve_dx_mm=nerve_dx, nerve_r_mm=float(rng.uniform(0.6, 1.0)),
        fascia_gain=tuple(float(v) for v in rng.uniform(0.6, 1.4, 4)),
        pulse_hz=float(rng.uniform(1.0, 1.5)), texture_seed=int(rng.integers(2**31)))


def random_needle(rng: np.random.Generator, width_mm: float, target_xy_mm: tuple) -> NeedleParams:
    """A needle aimed roughly at ``target_xy_mm`` (image mm), tip somewhere on the way."""
    angle = float(rng.uniform(20.0, 45.0))
    direction = int(rng.choice([-1, 1]))
    tx, ty = target_xy_mm
    tx += float(rng.uniform(-6, 6))
    ty = max(3.0, ty + float(rng.uniform(-6, 3)))
    full = ty / math.sin(math.radians(angle))
    entry = tx - direction * full * math.cos(math.radians(angle))
    length = full * float(rng.uniform(0.35, 1.0))
    vis = float(rng.choice([1.0, rng.uniform(0.1, 1.0)], p=[0.6, 0.4]))
    return NeedleParams(entry, angle, length, direction, vis)


# ----------------------------------------------------------------------------- rendering

class _Scene:
    """Per-anatomy state reused across frames of a clip (textures, speckle)."""

    def __init__(self, anatomy: Anatomy, size: tuple, spacing_mm: float, freq_mhz: float,
                 margin_px: int = 0):
        self.anatomy = anatomy
        self.h, self.w = size
        self.sp = spacing_mm
        self.freq = freq_mhz
        self.margin = margin_px
        rng = np.random.default_rng(anatomy.texture_seed)
        hw = (self.h, self.w + 2 * margin_px)
        # Complex scatterers with random phase: fixed to the tissue, so a clip does not
        # flicker; the probe sliding over the skin crops a different window.
        self.scat = ((rng.standard_normal(hw, dtype=np.float32)
                      + 1j * rng.standard_normal(hw, dtype=np.float32)) / np.sqrt(2)
                     ).astype(np.complex64)
        s = 1.0 / spacing_mm
        # muscle striations: noise stretched along the fibres (nearly horizontal)
        n = rng.standard_normal(hw, dtype=np.float32)
        st = cv2.GaussianBlur(n, (0, 0), sigmaX=max(1.0, 2.5 * s), sigmaY=max(0.5, 0.12 * s))
        st /= st.std() + 1e-6
        self.striation = np.clip(st, 0, None) ** 1.5
        # fat lobules: bright septa between isotropic blobs
        n = rng.standard_normal(hw, dtype=np.float32)
        lob = cv2.GaussianBlur(n, (0, 0), sigmaX=max(1.0, 0.9 * s))
        lob /= lob.std() + 1e-6
        self.septa = np.exp(-(lob / 0.25) ** 2)
        # nerve fascicles: dark dots in a bright epineurium
        n = rng.standard_normal(hw, dtype=np.float32)
        fa = cv2.GaussianBlur(n, (0, 0), sigmaX=max(0.7, 0.18 * s))
        self.fascicles = (fa / (fa.std() + 1e-6)) > 0.6
        self.patch = rng.uniform(0.5, 1.0, 64).astype(np.float32)  # lateral specular patchiness
        lam = SPEED_OF_SOUND_MM_PER_US / freq_mhz
        # pulse-echo PSF: ~1.5 cycles axially, beam about 1.6 wavelengths wide
        self.sig_z = max(0.6, 0.55 * lam / spacing_mm)
        self.sig_x = max(1.0, 1.2 * lam / spacing_mm)
        self.norm = float(np.sqrt(4 * np.pi * self.sig_x * self.sig_z))
        self.zmm = ((np.arange(self.h, dtype=np.float32) + 0.5) * spacing_mm)[:, None]

    def render(self, probe_x_mm: float, shift_px: int, t_s: float, needle: NeedleParams | None,
               la_radius_mm: float, la_x_mm: float | None, gain_db: float, dr_db: float,
               tgc_slope_db_cm: float, noise_rng: np.random.Generator) -> tuple:
        A = self.anatomy
        h, w, sp = self.h, self.w, self.sp
        z = self.zmm
        xi = (np.arange(w, dtype=np.float32) + 0.5) * sp  # image mm
        xt = xi + probe_x_mm  # tissue mm
        win = slice(self.margin + shift_px, self.margin + shift_px + w)

        # --- layer boundaries per column (depth mm)
        b_skin = np.full(w, A.skin_mm, np.float32)
        b_fat = A.fat_bottom(xt).astype(np.float32)
        b_pmaj = b_fat + np.maximum(3.0, A.pmaj_bottom_thick(xt))
        b_pmin = b_pmaj + np.maximum(2.5, A.pmin_thick(xt))  # top of the target plane
        gap = np.zeros(w, np.float32)
        if la_radius_mm > 0:
            cx = la_x_mm if la_x_mm is not None else xi[w // 2]
            u = (xi - cx) / la_radius_mm
            # a flat lens: the fluid spreads along the plane more than it lifts it
            gap = (0.55 * la_radius_mm * np.sqrt(np.clip(1 - u * u, 0, None))).astype(np.float32)
        b_serr = b_pmin + gap  # top of serratus
        b_deep = b_serr + np.maximum(2.0, A.serr_thick(xt))
        b_pmin_draw = b_pmin - gap * 0.5  # the fluid pushes both walls apart
        b_serr_draw = b_serr - gap * 0.5

        layer = ((z >= b_skin) * 1 + (z >= b_fat) + (z >= b_pmaj) + (z >= b_pmin_draw)
                 + (z >= b_serr_draw) + (z >= b_deep - gap * 0.5)).astype(np.uint8)
        # layer: 0 skin, 1 fat, 2 pec major, 3 pec minor, 4 fluid, 5 serratus, 6 deep

        labels = np.zeros((h, w), np.uint8)
        labels[layer == 2] = _PMAJ
        labels[layer == 3] = _PMIN
        labels[layer == 5] = _SERR

        echo = np.empty((h, w), np.float32)
        stri = self.striation[:, win]
        echo[:] = 0.35 + 0.55 * stri  # muscle
        fatm = layer == 1
        echo[fatm] = (0.22 + 0.9 * self.septa[:, win])[fatm]
        echo[layer == 0] = 1.5
        echo[layer == 4] = 0.02
        att = np.full((h, w), 1.0, np.float32)  # dB/cm/MHz
        att[fatm] = 0.6
        att[layer == 4] = 0.0

        # --- ribs, intercostal muscle, pleura, lung
        deep = layer == 6
        echo[deep] = (0.45 + 0.4 * stri)[deep]
        rib_top = (b_deep - gap * 0.5) + A.rib_gap_mm
        rib_cz = rib_top + A.rib_b_mm
        pleura = rib_cz + 0.6 * A.rib_b_mm
        under_rib = np.zeros(w, bool)
        spec = np.zeros((h, w), np.float32)
        cols = np.arange(w)
        for rx in A.rib_x_mm:
            dx = (xt - rx) / A.rib_a_mm
            inside_cols = np.abs(dx) < 1
            if not inside_cols.any():
                continue
            under_rib |= inside_cols
            half = A.rib_b_mm * np.sqrt(np.clip(1 - dx * dx, 0, None))
            top = rib_cz - half
            bone = (np.abs(dx) < 1)[None, :] & (z >= top) & (z <= rib_cz + half)
            labels[bone] = _BONE
            echo[bone] = 0.3
            att[bone] = 40.0  # cortex reflects/absorbs nearly everything: a shadow
            c = cols[inside_cols]
            self._line(spec, c, top[inside_cols], 5.0 * (0.6 + 0.4 * np.sqrt(1 - dx[inside_cols] ** 2)))
        lung = (z >= pleura) & deep
        echo[lung] = 0.10 + 0.2 * stri[lung]
        att[lung] = 1.5
        free = ~under_rib
        pw = max(0.45, 2.5 * sp)  # half-thickness of the pleura label
        pl = (np.abs(z - pleura) <= pw) & free[None, :]
        labels[pl] = _PLEURA
        # pleural line plus A-lines (reverberation between probe and pleura, at 2x, 3x depth)
        shimmer = 0.7 + 0.3 * self.patch[(np.arange(w) * 64 // max(1, w) + int(t_s * 7)) % 64]
        self._line(spec, cols[free], pleura[free], 4.0 * shimmer[free])
        for k, amp in ((2, 0.9), (3, 0.45)):
            self._line(spec, cols[free], k * pleura[free], amp * np.ones(free.sum(), np.float32))

        # --- fascia: specular lines on the muscle borders, labelled as a thin band
        fw = max(0.35, 3.0 * sp)
        patch = self.patch[((xt - xt[0] + self.margin * sp + shift_px * sp) / 3.0).astype(int) % 64]
        fas = [b_fat, b_pmaj, b_pmin_draw, b_serr_draw + gap, b_deep - gap * 0.5]
        gains = (A.fascia_gain[0], A.fascia_gain[1], A.fascia_gain[2], A.fascia_gain[2],
                 A.fascia_gain[3])
        for b, g in zip(fas, gains):
            labels[np.abs(z - b) <= fw] = _FASCIA
            self._line(spec, cols, b, 3.0 * g * patch)
        labels[layer == 4] = _BG

        # --- artery (pulsing) and nerve in the interpectoral plane
        pulse = max(0.0, math.sin(2 * math.pi * A.pulse_hz * t_s)) ** 2
        r = A.artery_r_mm * (1.0 + 0.12 * pulse)
        ax_img = A.artery_x_mm - probe_x_mm
        j = int(np.clip(ax_img / sp, 0, w - 1))
        az = float(b_pmaj[j]) + 0.3 * r
        d2 = (xi[None, :] - ax_img) ** 2 + (z - az) ** 2
        wall = (d2 <= (r + 0.35) ** 2)
        lumen = d2 <= r * r
        echo[wall] = 1.6
        echo[lumen] = 0.02
        spec[wall] *= 0.3  # the fascia wraps around the vessel rather than crossing it
        spec[lumen] = 0.0
        att[lumen] = 0.0  # blood hardly attenuates: posterior enhancement
        labels[wall] = _VESSEL
        vessel = {"centre_px": [ax_img / sp - 0.5, az / sp - 0.5], "radius_px": (r + 0.35) / sp,
                  "visible": bool(-r < ax_img < w * sp + r)}
        if A.nerve_dx_mm is not None:
            nx, nz = ax_img + A.nerve_dx_mm, az + 0.4 * r
            dn = (xi[None, :] - nx) ** 2 + (z - nz) ** 2
            nerve = dn <= A.nerve_r_mm ** 2
            # honeycomb: dark fascicles inside a bright epineurium
            echo[nerve] = np.where(self.fascicles[:, win], 0.1, 2.2)[nerve]
            echo[nerve & (dn >= (0.7 * A.nerve_r_mm) ** 2)] = 2.6
            labels[nerve] = _NERVE

        # --- needle: specular shaft, bright bevel, reverberation below, slight shadow
        ninfo = {"visible": False, "tip_px": None, "entry_px": None, "angle_deg": None,
                 "visibility": 0.0, "depth_mm": None}
        if needle is not None:
            ninfo = self._needle(needle, labels, spec, att)

        # --- echo formation
        ex = (att - 0.8) * self.freq * 2.0 * (sp / 10.0) / 8.686  # excess nepers per px
        trans = np.exp(-np.cumsum(ex, axis=0, dtype=np.float32) + 0.5 * ex)
        trans = cv2.GaussianBlur(trans, (0, 0), sigmaX=self.sig_x, sigmaY=0.1)
        field_ = self.scat[:, win] * echo
        field_ = field_ + spec
        field_ *= trans
        iq = np.empty((h, w, 2), np.float32)
        iq[..., 0] = field_.real
        iq[..., 1] = field_.imag
        iq = cv2.GaussianBlur(iq, (0, 0), sigmaX=self.sig_x, sigmaY=self.sig_z)
        iq *= self.norm
        # electronic noise, amplified by the TGC: grows with depth
        noise_amp = 0.006 * 10 ** (3.0 * (z / 10.0) / 20.0)
        nz = noise_rng.standard_normal((h, w, 2), dtype=np.float32)
        iq += nz * noise_amp[..., None]
        env = np.sqrt(iq[..., 0] ** 2 + iq[..., 1] ** 2)
        db = 20.0 * np.log10(env + 1e-4) + gain_db + tgc_slope_db_cm * (z / 10.0)
        # near field ring-down just under the transducer
        db[: max(1, int(0.5 / sp))] += 6.0
        img = (db + 0.52 * dr_db) * (255.0 / dr_db)
        image = np.clip(img, 0, 255).astype(np.uint8)
        # the injectate (local anaesthetic) where it is not under another class's label
        return image, labels, ninfo, vessel, (b_pmin, b_serr), (layer == 4) & (labels == 0)

    def _line(self, spec: np.ndarray, cols: np.ndarray, depth_mm: np.ndarray, amp) -> None:
        """Add a specular reflector at depth_mm in each column (sub-pixel split)."""
        r = depth_mm / self.sp - 0.5
        r0 = np.floor(r).astype(np.int64)
        f = (r - r0).astype(np.float32)
        amp = np.broadcast_to(np.asarray(amp, np.float32), r.shape)
        for rr, wt in ((r0, 1 - f), (r0 + 1, f)):
            ok = (rr >= 0) & (rr < self.h)
            spec[rr[ok], cols[ok]] += amp[ok] * wt[ok]

    def _needle(self, n: NeedleParams, labels: np.ndarray, spec: np.ndarray,
                att: np.ndarray) -> dict:
        sp, h, w = self.sp, self.h, self.w
        a = math.radians(n.angle_deg)
        ux, uy = n.direction * math.cos(a), math.sin(a)
        ex, ey = n.entry_x_mm, 0.0
        tx, ty = n.tip_mm()
        # the part of the shaft inside the image: clip the segment to the image box (mm)
        t0, t1 = 0.0, n.length_mm
        W, H = w * sp, h * sp
        for p, d, lo, hi in ((ex, ux, 0.0, W), (ey, uy, 0.0, H)):
            if abs(d) < 1e-9:
                if not lo <= p <= hi:
                    t1 = -1
                continue
            ta, tb = (lo - p) / d, (hi - p) / d
            t0, t1 = max(t0, min(ta, tb)), min(t1, max(ta, tb))
        info = {"visible": False, "tip_px": None, "entry_px": None,
                "angle_deg": float(n.angle_deg), "visibility": float(n.visibility),
                "depth_mm": float(ty), "direction": int(n.direction),
                "tip_mm": [float(tx), float(ty)]}
        if t1 <= t0:
            return info
        px = lambda t: ((ex + ux * t) / sp - 0.5, (ey + uy * t) / sp - 0.5)  # noqa: E731
        e_px, tip_px = px(t0), px(t1)
        info["entry_px"] = [float(e_px[0]), float(e_px[1])]
        info["tip_px"] = [float(tip_px[0]), float(tip_px[1])]
        # specular echo is strong when the shaft is near perpendicular to the beam
        amp = 6.0 * n.visibility * (0.55 + 0.45 * math.cos(a) ** 2)
        ts = np.arange(t0, t1, 0.5 * sp, dtype=np.float32)
        xs = (ex + ux * ts) / sp - 0.5
        ys = (ey + uy * ts) / sp - 0.5
        cols = np.clip(np.round(xs).astype(np.int64), 0, w - 1)
        # each column hit once per step; normalise by steps per column
        per_col = max(1.0, 1.0 / max(abs(ux), 1e-3) * 0.5)
        base = np.full(ts.shape, amp / per_col, np.float32)
        bevel = ts > (n.length_mm - 1.0)
        base[bevel] *= 2.0 if t1 >= n.length_mm - 1e-6 else 1.0
        dz = 0.75 / max(math.cos(a), 0.3)  # reverberation spacing (wall to wall)
        for k in range(5):
            self._line(spec, cols, (ys + 0.5) * sp + k * dz, base * (0.45 ** k))
        # a faint shadow under the shaft
        rows = np.clip(np.round(ys).astype(np.int64), 0, h - 1)
        att[rows, cols] += 6.0 * n.visibility
        if n.visibility >= 0.3:
            # a band 0.8 mm (>= 3 px) wide with square ends, so the labelled end is the tip
            half = max(1.5, 0.4 / sp)
            nx, ny = -uy * half, ux * half
            s = 4  # sub-pixel drawing
            quad = np.array([[e_px[0] + nx, e_px[1] + ny], [tip_px[0] + nx, tip_px[1] + ny],
                             [tip_px[0] - nx, tip_px[1] - ny], [e_px[0] - nx, e_px[1] - ny]])
            cv2.fillConvexPoly(labels, np.round(quad * 2 ** s).astype(np.int32), _NEEDLE,
                               lineType=cv2.LINE_8, shift=s)
            info["visible"] = bool((labels == _NEEDLE).any())
        return info


def _resolve(params: SimParams, rng: np.random.Generator) -> dict:
    depth = params.depth_mm if params.depth_mm is not None else float(rng.uniform(20.0, 60.0))
    return {
        "depth_mm": float(depth),
        "gain_db": params.gain_db if params.gain_db is not None else float(rng.uniform(-5, 5)),
        "freq_mhz": params.freq_mhz if params.freq_mhz is not None else float(rng.uniform(8, 13)),
        "dr_db": (params.dynamic_range_db if params.dynamic_range_db is not None
                  else float(rng.uniform(45, 60))),
        "probe_x_mm": params.probe_x_mm if params.probe_x_mm is not None else float(rng.uniform(-8, 8)),
        "tgc_slope_db_cm": float(rng.uniform(-2.0, 1.0)),
    }


def _check_size(size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"size must be (rows, cols), got {size!r}") from exc
    if not (32 <= h <= 4096 and 32 <= w <= 4096):
        raise ValueError(f"size (rows, cols) must each be 32..4096 px, got {(h, w)}")
    return h, w


def simulate_frame(seed: int | np.random.Generator, params: SimParams | None = None) -> SimFrame:
    """One PECS II frame with its labels; the same seed and params give the same frame."""
    rng = _rng(seed)
    params = params or SimParams()
    h, w = _check_size(params.size)
    anatomy = params.anatomy or sample_anatomy(rng)
    v = _resolve(params, rng)
    sp = v["depth_mm"] / h
    scene = _Scene(anatomy, (h, w), sp, v["freq_mhz"])
    width_mm = w * sp
    needle = params.needle
    target = _target_mm(anatomy, v["probe_x_mm"], width_mm)
    if isinstance(needle, str):
        if needle != "random":
            raise ValueError(f"params.needle must be 'random', None or NeedleParams, got {needle!r}")
        needle = random_needle(rng, width_mm, target) if rng.random() < 0.7 else None
    la_r = params.la_radius_mm
    la_x = params.la_x_mm
    if la_r > 0 and la_x is None:
        la_x = needle.tip_mm()[0] if isinstance(needle, NeedleParams) else target[0]
    image, labels, ninfo, vessel, (b_pmin, _), fluid = scene.render(
        v["probe_x_mm"], 0, params.time_s, needle, la_r, la_x, v["gain_db"], v["dr_db"],
        v["tgc_slope_db_cm"], rng)
    return SimFrame(image=image, labels=labels, spacing_mm=sp, depth_mm=v["depth_mm"],
                    needle=ninfo, vessel=vessel,
                    target_px=(target[0] / sp - 0.5, target[1] / sp - 0.5),
                    params={**v, "needle": asdict(needle) if isinstance(needle, NeedleParams) else None,
                            "la_radius_mm": la_r, "time_s": params.time_s},
                    fluid=fluid if la_r > 0 else None)


def _target_mm(anatomy: Anatomy, probe_x_mm: float, width_mm: float,
               frac: float = 0.6) -> tuple[float, float]:
    """A point (image mm) on the plane between pectoralis minor and serratus."""
    x = frac * width_mm
    xt = np.array([x + probe_x_mm], np.float32)
    b = (anatomy.fat_bottom(xt) + np.maximum(3.0, anatomy.pmaj_bottom_thick(xt))
         + np.maximum(2.5, anatomy.pmin_thick(xt)))
    return float(x), float(b[0])


def _artery_mm(anatomy: Anatomy, probe_x_mm: float) -> tuple[float, float]:
    """Artery centre (image mm) at rest, as the renderer places it."""
    xt = np.array([anatomy.artery_x_mm], np.float32)
    b = anatomy.fat_bottom(xt) + np.maximum(3.0, anatomy.pmaj_bottom_thick(xt))
    return anatomy.artery_x_mm - probe_x_mm, float(b[0]) + 0.3 * anatomy.artery_r_mm


def near_artery_needle(rng: np.random.Generator, anatomy: Anatomy, probe_x_mm: float,
                       gap_mm: float) -> NeedleParams:
    """An in-plane needle (20-45 degrees, from either side) whose tip stops ``gap_mm`` from
    the artery's wall at rest, on the wall's upper side facing the needle (a careless path,
    for training and testing the artery under a needle's reverberations)."""
    ax, az = _artery_mm(anatomy, probe_x_mm)
    direction = int(rng.choice([-1, 1]))
    around = math.radians(float(rng.uniform(-70.0, 10.0))) * direction  # from the top
    r = anatomy.artery_r_mm + float(gap_mm)
    tx, tz = ax + r * math.sin(around), max(3.0, az - r * math.cos(around))
    angle = float(rng.uniform(20.0, 45.0))
    length = tz / math.sin(math.radians(angle))
    entry = tx - direction * length * math.cos(math.radians(angle))
    return NeedleParams(entry, angle, length, direction, 1.0)


def _point_segment_mm(p: tuple, a: tuple, b: tuple) -> float:
    px, py = p[0] - a[0], p[1] - a[1]
    dx, dy = b[0] - a[0], b[1] - a[1]
    u = min(1.0, max(0.0, (px * dx + py * dy) / max(dx * dx + dy * dy, 1e-9)))
    return math.hypot(px - u * dx, py - u * dy)


# ----------------------------------------------------------------------------- clips

def _smoothstep(u: float) -> float:
    u = min(1.0, max(0.0, u))
    return u * u * (3 - 2 * u)


def clip_story_times(dur_s: float, needle_start_s: float | None = None,
                     needle_arrive_s: float | None = None,
                     inject_start_s: float | None = None) -> tuple[float, float, float]:
    """(needle enters, needle arrives, injection starts) in s of a ``dur_s`` clip, each the
    given time or ``render_clip``'s default story."""
    ns = needle_start_s if needle_start_s is not None else min(2.0, 0.17 * dur_s)
    na = needle_arrive_s if needle_arrive_s is not None else ns + 0.5 * (dur_s - ns)
    inj = inject_start_s if inject_start_s is not None else na + 0.15 * (dur_s - na)
    return ns, na, inj


def render_clip(out: str | Path, n_frames: int = 240, fps: int = 20, seed: int = 0,
                size: tuple = DEFAULT_SIZE, depth_mm: float | None = None,
                needle_start_s: float | None = None, needle_arrive_s: float | None = None,
                inject_start_s: float | None = None, miss_window_s: tuple | None = None,
                stop_near_artery_mm: float | None = None, slide_mm: float = 0.0,
                slide_at_s: float | None = None, slide_s: float = 0.6) -> dict:
    """Render a PECS II clip: MP4 frames plus ``<stem>_masks.npz`` (labels, N x H x W) and
    ``<stem>_meta.json`` (per-frame needle tip, spacing, depth). ``out`` is an .mp4 path or a
    folder (then ``clip.mp4`` in it). Story: scan, the needle enters at
    ``needle_start_s``, advances to the plane under pectoralis minor by
    ``needle_arrive_s``, local anaesthetic from ``inject_start_s`` opens the plane.
    ``stop_near_artery_mm``: the needle stops this far above the artery's wall instead
    (a careless path; the injection opens there), to test that its alert survives.
    ``slide_mm``: the probe slides this far over the skin (+: the image moves left) in
    ``slide_s`` from ``slide_at_s`` (default: halfway through the needle's approach), as an
    operator repositioning does; 0 leaves the clip as it was.
    Returns the metadata dict (also written as JSON)."""
    t_start = time.perf_counter()
    if int(n_frames) < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames!r}")
    if not (1 <= int(fps) <= 240):
        raise ValueError(f"fps must be 1..240, got {fps!r}")
    n_frames, fps = int(n_frames), int(fps)
    if not (math.isfinite(float(slide_mm)) and abs(float(slide_mm)) <= 20):
        raise ValueError(f"slide_mm must be -20..20, got {slide_mm!r}")
    if not float(slide_s) > 0:
        raise ValueError(f"slide_s must be > 0 s, got {slide_s!r}")
    h, w = _check_size(size)
    out = Path(out)
    mp4 = out if out.suffix.lower() == ".mp4" else out / "clip.mp4"
    mp4.parent.mkdir(parents=True, exist_ok=True)
    dur = n_frames / fps
    ns, na, inj = clip_story_times(dur, needle_start_s, needle_arrive_s, inject_start_s)
    slide_at = slide_at_s if slide_at_s is not None else ns + 0.5 * (na - ns)

    rng = np.random.default_rng(seed)
    anatomy = sample_anatomy(rng)
    depth = float(depth_mm) if depth_mm is not None else float(rng.uniform(35.0, 45.0))
    sp = depth / h
    freq = float(rng.uniform(9.0, 12.0))
    gain = float(rng.uniform(-2, 2))
    dr = 55.0
    tgc = float(rng.uniform(-1.0, 0.5))
    probe0 = float(rng.uniform(-4, 4))
    drift_mm = 1.2  # the hand holding the probe is not still
    margin = int(math.ceil((drift_mm + abs(float(slide_mm)) + 0.5) / sp)) + 1
    scene = _Scene(anatomy, (h, w), sp, freq, margin_px=margin)
    width_mm = w * sp
    # the needle: in-plane from the left, about 30 degrees, aimed at the plane, on a path
    # that keeps clear of the artery (as a careful operator would)
    angle = float(rng.uniform(26, 38))
    ax, az = _artery_mm(anatomy, probe0)
    for frac in (0.6, 0.7, 0.5, 0.78, 0.42, 0.85, 0.35):
        target = _target_mm(anatomy, probe0, width_mm, frac)
        full = target[1] / math.sin(math.radians(angle)) + 0.6  # tip just into the plane
        entry_x = target[0] - (full - 0.6) * math.cos(math.radians(angle))
        if _point_segment_mm((ax, az), (entry_x, 0.0), target) > anatomy.artery_r_mm + 3.0:
            break
    if stop_near_artery_mm is not None:
        if not 0 <= float(stop_near_artery_mm) <= 20:
            raise ValueError(f"stop_near_artery_mm must be 0..20, got {stop_near_artery_mm!r}")
        target = (ax, az - anatomy.artery_r_mm - float(stop_near_artery_mm))
        full = target[1] / math.sin(math.radians(angle)) + 0.6
        entry_x = target[0] - (full - 0.6) * math.cos(math.radians(angle))

    writer = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h), False)
    if not writer.isOpened():
        raise RuntimeError(f"cannot open a video writer for {mp4}")
    labels_all = np.empty((n_frames, h, w), np.uint8)
    frames_meta = []
    noise_rng = np.random.default_rng([seed, 1])
    try:
        for i in range(n_frames):
            t = i / fps
            shift_mm = drift_mm * math.sin(2 * math.pi * t / 7.0) * 0.8
            if slide_mm:
                shift_mm += float(slide_mm) * _smoothstep((t - slide_at) / float(slide_s))
            shift_px = int(round(shift_mm / sp))
            probe = probe0 + shift_px * sp  # whole pixels: the speckle moves with the tissue
            needle = None
            if t >= ns:
                u = _smoothstep((t - ns) / max(1e-3, na - ns))
                jiggle = 0.8 * math.sin(2 * math.pi * 1.3 * t) * (1 if t < na else 0.3)
                length = max(0.5, 2.0 + u * (full - 2.0) + jiggle)
                vis = 1.0
                if miss_window_s is not None and miss_window_s[0] <= t < miss_window_s[1]:
                    vis = 0.12  # the beam slid off the shaft
                # entry fixed on the skin: in image coordinates it moves against the probe
                needle = NeedleParams(entry_x - (probe - probe0), angle, length, 1, vis)
            la_r = 0.0
            if t >= inj:
                la_r = 1.0 + 8.0 * _smoothstep((t - inj) / max(1e-3, dur - inj))
            la_x = needle.tip_mm()[0] if needle is not None else None
            image, labels, ninfo, vessel, _, _ = scene.render(
                probe, shift_px, t, needle, la_r, la_x, gain, dr, tgc, noise_rng)
            writer.write(image)
            labels_all[i] = labels
            frames_meta.append({"i": i, "t_s": round(t, 4), "needle": ninfo, "vessel": vessel,
                                "injecting": bool(t >= inj), "la_radius_mm": la_r,
                                "probe_x_mm": probe})
    finally:
        writer.release()
    masks = mp4.with_name(mp4.stem + "_masks.npz")
    np.savez_compressed(masks, labels=labels_all)
    meta = {
        "video": str(mp4), "masks": str(masks), "fps": fps, "n_frames": n_frames,
        "size": [h, w], "spacing_mm": sp, "depth_mm": depth, "seed": int(seed),
        "freq_mhz": freq, "classes": list(CLASSES), "needle_start_s": ns,
        "needle_arrive_s": na, "inject_start_s": inj,
        "slide_mm": float(slide_mm), "slide_at_s": slide_at if slide_mm else None,
        "target_px": [target[0] / sp - 0.5, target[1] / sp - 0.5],
        "note": "simulated PECS II scan; not for clinical use", "frames": frames_meta,
    }
    # <stem>_meta.json, not <stem>.json: callers keep their own summary beside the clip
    meta_path = mp4.with_name(mp4.stem + "_meta.json")
    meta["meta"] = str(meta_path)
    meta_path.write_text(json.dumps(meta))
    log.info("rendered %d frames to %s in %.1f s", n_frames, mp4, time.perf_counter() - t_start)
    return meta


def make_demo_clip(path_mp4: str, seconds: float = 12, fps: int = 20, seed: int = 0) -> dict:
    """The system demo: a PECS II scan; the needle enters after 2 s, advances to the plane
    between pectoralis minor and serratus by ~60 % of the clip, the beam slips off the
    shaft for a moment, then local anaesthetic opens the plane. 562 x 542, deterministic."""
    if not seconds or seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    n = max(1, int(round(seconds * fps)))
    dur = n / fps
    ns = min(2.0, 0.17 * dur)
    na = ns + 0.55 * (dur - ns)
    miss = (ns + 0.3 * (dur - ns), ns + 0.3 * (dur - ns) + 0.15)
    return render_clip(path_mp4, n_frames=n, fps=fps, seed=seed, size=DEFAULT_SIZE,
                       depth_mm=40.0, needle_start_s=ns, needle_arrive_s=na,
                       inject_start_s=na + 0.12 * (dur - na), miss_window_s=miss)


__all__ = ["Anatomy", "Curve", "NeedleParams", "SimFrame", "SimParams", "clip_story_times",
           "make_demo_clip",
           "near_artery_needle", "random_needle", "render_clip", "sample_anatomy",
           "simulate_frame"]
