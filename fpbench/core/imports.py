"""Loading a user's object named ``module:attr`` or ``path/to/file.py:attr`` (a method, a model factory, a
target class): one loader, one set of messages."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from .errors import FpbenchError


def load_attr(spec: str, what: str):
    """The attribute ``attr`` of an importable module (the working directory searched too) or of a .py file;
    a ValueError "cannot load <what> <spec>: <why>" where it cannot."""
    where, _, name = spec.rpartition(":")
    try:
        if where.endswith(".py"):
            path = Path(where).resolve()
            if not path.exists():
                raise ImportError(f"no file {where}")
            module_spec = importlib.util.spec_from_file_location(f"fpbench_user_{path.stem}", path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_spec.name] = module
            module_spec.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))  # a user's module beside their suite files
            module = importlib.import_module(where)
        if not hasattr(module, name):
            raise AttributeError(f"{where} has no {name!r}")
        return getattr(module, name)
    except (ImportError, AttributeError, SyntaxError) as err:
        raise FpbenchError(f"cannot load {what} {spec!r}: {err}") from None
