"""Output paths: what stops a path from being made into a folder (one check for every tool
that writes one, so each can refuse before it starts instead of failing half-way)."""
from __future__ import annotations

from pathlib import Path


def file_in_the_way(path: str | Path) -> Path | None:
    """The existing non-folder at ``path`` or at its nearest existing parent, which would stop
    ``path`` being made as a folder; None when nothing is in the way."""
    p = Path(path)
    for q in (p, *p.parents):
        if q.exists():
            return None if q.is_dir() else q
    return None
