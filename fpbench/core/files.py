"""Reading stored files that may be damaged (a full disk, a copy cut short, a hand edit; fpbench's own
writes are atomic). One rule everywhere: a file that cannot be read is moved aside to ``<name>.corrupt``
(kept for inspection), with a warning that names it, and whatever produced it is computed again. With
fixed seeds that reproduces the lost result exactly."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path


def read_or_set_aside(path: Path, load: Callable, what: str = "it is computed again"):
    """``load(path)``; None when the file is absent, or damaged (then moved to ``<name>.corrupt``)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return load(path)
    except Exception as err:  # any damage a reader can meet
        aside = path.with_name(path.name + ".corrupt")
        path.replace(aside)
        warnings.warn(f"{path} is unreadable ({type(err).__name__}); moved to {aside.name}, {what}", stacklevel=2)
        return None
