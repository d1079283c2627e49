"""Block presets: what to find, where to aim, what to avoid, for each nerve block.

A preset is a frozen dataclass. Defaults ship in code (:func:`default_presets`); a
``blocks:`` section of config.yaml replaces them, read strictly by ``assistant/config.py``
into these dataclasses (an unknown key or a wrong value is an error naming the file, the
block and the key; the checks of a preset's values are its ``__post_init__``).

Class names are those of :mod:`models.classes`. There is one ``vessel`` class (artery
or vein); in speech a vessel to avoid is called "artery", the dangerous case.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from models.classes import CLASSES

#: words used when a class name is spoken
SPOKEN_CLASS = {
    "nerve": "nerve", "vessel": "vessel", "fascia": "fascia",
    "pec_major": "pec major", "pec_minor": "pec minor", "serratus": "serratus",
    "bone": "bone", "pleura": "pleura", "needle": "needle",
}
#: how a structure to avoid is named in alerts
DANGER_NAME = {"vessel": "artery", "pleura": "pleura"}


def danger_name(cls: str) -> str:
    """How a class to avoid is spoken in an alert ("vessel" -> "artery")."""
    return DANGER_NAME.get(cls, SPOKEN_CLASS.get(cls, cls))


@dataclass(frozen=True)
class BlockPreset:
    """One nerve block.

    ``key_structures``: classes that must be seen for a good view (quality score).
    ``target_plane``: (upper class, lower class) whose boundary is the injection plane,
    or ``None`` for a perineural block whose target is ``target_class``.
    ``avoid``: classes the needle tip must stay away from (pleura, vessel).
    ``target_depth_mm``: usual depth of the target below the skin (low, high).
    ``image_depth_mm``: a sensible imaging-depth setting for this block (low, high).
    ``expected_depth_frac``: where the key structures' centres are expected, as a
    fraction of image height (top, bottom); used when the pixel spacing is unknown too.
    """

    id: str
    name: str  # spoken / shown name, e.g. "PECS two"
    key_structures: tuple[str, ...]
    avoid: tuple[str, ...]
    target_plane: tuple[str, str] | None = None
    target_class: str | None = None
    target_depth_mm: tuple[float, float] = (10.0, 30.0)
    image_depth_mm: tuple[float, float] = (25.0, 50.0)
    expected_depth_frac: tuple[float, float] = (0.1, 0.8)

    def __post_init__(self) -> None:
        where = f"block '{self.id}'"
        if not self.id or not isinstance(self.id, str):
            raise ValueError(f"block id must be a non-empty string, got {self.id!r}")
        for field_name in ("key_structures", "avoid"):
            for cls in getattr(self, field_name):
                if cls not in CLASSES or cls == "background":
                    raise ValueError(f"{where}: {field_name} has unknown class {cls!r} "
                                     f"(known: {', '.join(CLASSES[1:])})")
        if not self.key_structures:
            raise ValueError(f"{where}: key_structures is empty")
        if (self.target_plane is None) == (self.target_class is None):
            raise ValueError(f"{where}: give exactly one of target_plane and target_class")
        if self.target_plane is not None:
            if len(self.target_plane) != 2 or any(c not in CLASSES for c in self.target_plane):
                raise ValueError(f"{where}: target_plane must be two class names, "
                                 f"got {self.target_plane!r}")
        if self.target_class is not None and self.target_class not in CLASSES:
            raise ValueError(f"{where}: target_class {self.target_class!r} is not a class")
        for field_name in ("target_depth_mm", "image_depth_mm", "expected_depth_frac"):
            lo, hi = getattr(self, field_name)
            if not (0 <= lo < hi):
                raise ValueError(f"{where}: {field_name} must be (low, high) with "
                                 f"0 <= low < high, got {(lo, hi)!r}")
        lo, hi = self.expected_depth_frac
        if hi > 1:
            raise ValueError(f"{where}: expected_depth_frac is a fraction of image height, "
                             f"got {(lo, hi)!r}")

    @property
    def target_text(self) -> str:
        """The target in words: "the plane between pec minor and serratus"."""
        if self.target_plane:
            a, b = (SPOKEN_CLASS[c] for c in self.target_plane)
            return f"the plane between {a} and {b}"
        return f"the {SPOKEN_CLASS[self.target_class]}"


def default_presets() -> tuple[BlockPreset, ...]:
    """The six shipped presets, in the order "next block" walks through them.

    Depths are typical adult values from the regional-anaesthesia literature
    (decision support only); a site tunes them in config.
    """
    return (
        BlockPreset("pecs1", "PECS one", key_structures=("pec_major", "pec_minor"),
                    avoid=("pleura", "vessel"), target_plane=("pec_major", "pec_minor"),
                    target_depth_mm=(8.0, 20.0), image_depth_mm=(25.0, 40.0),
                    expected_depth_frac=(0.05, 0.7)),
        BlockPreset("pecs2", "PECS two", key_structures=("pec_major", "pec_minor", "serratus"),
                    avoid=("pleura", "vessel"), target_plane=("pec_minor", "serratus"),
                    target_depth_mm=(15.0, 35.0), image_depth_mm=(30.0, 50.0),
                    expected_depth_frac=(0.05, 0.8)),
        BlockPreset("interscalene", "interscalene", key_structures=("nerve", "vessel"),
                    avoid=("vessel",), target_class="nerve",
                    target_depth_mm=(5.0, 20.0), image_depth_mm=(20.0, 40.0)),
        BlockPreset("supraclavicular", "supraclavicular", key_structures=("nerve", "vessel"),
                    avoid=("pleura", "vessel"), target_class="nerve",
                    target_depth_mm=(8.0, 25.0), image_depth_mm=(25.0, 45.0)),
        BlockPreset("axillary", "axillary", key_structures=("nerve", "vessel"),
                    avoid=("vessel",), target_class="nerve",
                    target_depth_mm=(5.0, 20.0), image_depth_mm=(20.0, 40.0)),
        BlockPreset("femoral", "femoral", key_structures=("nerve", "vessel"),
                    avoid=("vessel",), target_class="nerve",
                    target_depth_mm=(15.0, 40.0), image_depth_mm=(30.0, 55.0)),
    )


def find_preset(presets: Iterable[BlockPreset], block_id: str) -> BlockPreset:
    """The preset with this id; ValueError naming the known ids otherwise."""
    presets = tuple(presets)
    for p in presets:
        if p.id == block_id:
            return p
    raise ValueError(f"unknown block {block_id!r} (known: {', '.join(p.id for p in presets)})")
