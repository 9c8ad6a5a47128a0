"""The results store: one directory per case, named by the hash of its resolved configuration.

    <root>/<case key>/config.json      the resolved configuration (written first)
    <root>/<case key>/checkpoint.pt    training state while training (removed when trained)
    <root>/<case key>/model.pt         the trained weights
    <root>/<case key>/train.json       loss history and training time
    <root>/<case key>/samples.npz      the samplers' output: for the grid distance the 64 x 64 node counts
                                       of the ODE, SDE and p0 samples (and their first 2,000 points, for
                                       figures); for point distances the points themselves. Stores
                                       written before 2026-12-02 call it histograms.npz (still read)
    <root>/<case key>/metrics.json     all metrics; written last, so its presence means "done"
    <root>/<case key>/failed.json      why the case failed (a rerun retries it and removes this)
    <root>/<case key>/.lock            held by the process running the case (two runs on one store
                                       never run a case twice: the second leaves it, status "busy")
    <root>/floors/<key>.json           noise floors, shared by cases with the same target and n

Every write goes to a temporary file first and is renamed into place (atomic on POSIX), so a
killed run never leaves a half-written file under a final name. The root is ``./results``,
or ``$FPBENCH_RESULTS``, or the ``--results`` option.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import FpbenchError

DEFAULT_ROOT = "results"


def results_root(option: str | None = None) -> Path:
    return Path(option or os.environ.get("FPBENCH_RESULTS") or DEFAULT_ROOT)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def write_json(path: Path, obj) -> None:
    _atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise FpbenchError(f"corrupt result file {path}: {err}; delete it to recompute") from None


SAMPLES_FILE = "samples.npz"
LEGACY_SAMPLES_FILE = "histograms.npz"  # its name in stores written before 2026-12-02


def samples_path(case_dir: Path) -> Path:
    """Where a case's sampler output lies: ``samples.npz``, or in an older store its former name."""
    new, old = case_dir / SAMPLES_FILE, case_dir / LEGACY_SAMPLES_FILE
    return old if old.exists() and not new.exists() else new


def read_npz(path: Path) -> dict:
    """Every array of an .npz file, read now (so that damage surfaces here, not at a later access)."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def write_npz(path: Path, **arrays) -> None:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    _atomic_write_bytes(path, buf.getvalue())


class StoreError(FpbenchError):
    """A results directory that cannot be used."""


def unwritable_reason(folder: Path) -> str | None:
    """Why ``folder`` cannot be created or written (a probe file is written there and removed), or None."""
    probe = Path(folder) / f".write-probe-{os.getpid()}"
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        return str(err.strerror or err)
    return None


class Store:
    """Results of cases under one root."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.held: set[str] = set()  # keys of the cases whose locks this process holds (``case_lock``)
        self._trained_index: dict[str, list[Path]] | None = None  # train key -> case dirs with weights

    def check_writable(self) -> Store:
        """Create the root if needed and write (then remove) a probe file in it; a StoreError naming
        the directory and the reason if either fails, before anything is computed."""
        if (reason := unwritable_reason(self.root)) is not None:
            raise StoreError(f"results directory {self.root} cannot be written: {reason} "
                             f"(choose another with --results or $FPBENCH_RESULTS)")
        return self

    def case_dir(self, key: str) -> Path:
        return self.root / key

    def trained_source(self, case) -> Path | None:
        """A case directory of this store holding trained weights and history for ``case.train_key`` (the
        same training settings; another case key where only sampling or metrics settings differ), or None.
        Stores written before training keys existed are read the same way: each case's config says it."""
        from .suite import Case

        if self._trained_index is None:
            self._trained_index = {}
            for config in sorted(self.root.glob("*/config.json")):
                folder = config.parent
                if (folder / "model.pt").exists() and (folder / "train.json").exists():
                    self._trained_index.setdefault(Case(read_json(config)).train_key, []).append(folder)
        for folder in self._trained_index.get(case.train_key, []):
            if (folder / "model.pt").exists() and (folder / "train.json").exists():
                return folder
        return None

    def samples(self, key: str) -> dict | None:
        """The case's stored sampler output (``samples_path``), or None when absent or damaged."""
        return self.cached(samples_path(self.case_dir(key)), read_npz)

    def is_done(self, key: str) -> bool:
        """The case's ``metrics.json`` exists and reads (a damaged one is set aside: the case is not done)."""
        return self.cached(self.case_dir(key) / "metrics.json") is not None

    @staticmethod
    def cached(path: Path, load=None):
        """A stored result, or None when it is absent or damaged (then moved to ``<name>.corrupt`` with a
        warning, ``fpbench.core.files``): the caller computes it again."""
        from ..core.files import read_or_set_aside

        return read_or_set_aside(path, load or (lambda p: json.loads(p.read_text())))

    def metrics(self, key: str) -> dict:
        return read_json(self.case_dir(key) / "metrics.json")

    def mark_failed(self, key: str, label: str, err: BaseException) -> None:
        """Record why a case failed (``failed.json``: the error, its message and its traceback, which
        ``fpbench run --debug`` prints); its finished stages stay, a rerun retries it."""
        import traceback

        write_json(self.case_dir(key) / "failed.json", {"case": label, "error": type(err).__name__,
                                                        "message": str(err),
                                                        "traceback": "".join(traceback.format_exception(err))})

    def failure(self, key: str) -> dict | None:
        return self.cached(self.case_dir(key) / "failed.json")

    def clear_failure(self, key: str) -> None:
        (self.case_dir(key) / "failed.json").unlink(missing_ok=True)

    def case_lock(self, key: str):
        """The case's inter-process lock (``<root>/<key>/.lock``, the ``filelock`` package): whoever holds
        it runs the case; another ``fpbench run`` on the same store leaves the case alone."""
        from filelock import FileLock

        self.case_dir(key).mkdir(parents=True, exist_ok=True)
        return FileLock(self.case_dir(key) / ".lock")

    @staticmethod
    def computed_once(path: Path, compute):
        """The JSON stored at ``path``, else ``compute()``'s (a JSON value) stored there. Computed under a lock
        beside it (``<path>.lock``), so that processes sharing the store compute it once: the others wait
        for it, then read it (the exact-score oracle of circles2 takes tens of CPU-minutes)."""
        from filelock import FileLock

        if (cached := Store.cached(path)) is not None:
            return cached
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{path}.lock"):
            if (cached := Store.cached(path)) is not None:  # another process computed it while we waited
                return cached
            value = compute()
            write_json(path, value)
            return value

    def cached_floor(self, spec: dict, measure):
        """The noise floor stored under ``spec`` (``floor_path``), else ``measure()``'d and stored."""
        from ..core.metrics import NoiseFloor

        stored = self.computed_once(self.floor_path(spec), lambda: {"spec": spec, "floor": measure().to_dict()})
        return NoiseFloor(**stored["floor"])

    def floor_path(self, spec: dict) -> Path:
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        return self.root / "floors" / f"{digest}.json"

    def find(self, prefix: str) -> Path:
        """The case directory whose key starts with ``prefix``."""
        matches = [p for p in self.root.glob(f"{prefix}*") if p.is_dir() and p.name != "floors"]
        if len(matches) != 1:
            raise FpbenchError(f"{'no' if not matches else 'several'} run(s) match {prefix!r} under {self.root}")
        return matches[0]

    def runs(self) -> list[dict]:
        """Every case directory: key, suite, scale, case label and status (done, failed, or which
        stage it reached), sorted by suite, scale and label."""
        from .suite import Case

        rows = []
        for config_path in self.root.glob("*/config.json"):
            key, cfg = config_path.parent.name, read_json(config_path)
            failure = self.failure(key)
            status = "done" if self.is_done(key) else f"failed: {failure['error']}" if failure else \
                "sampled" if samples_path(config_path.parent).exists() else \
                "trained" if (config_path.parent / "model.pt").exists() else "started"
            rows.append({"key": key, "suite": cfg.get("suite", "?"), "scale": cfg.get("scale", "?"),
                         "case": Case(cfg).label, "status": status})
        return sorted(rows, key=lambda r: (r["suite"], r["scale"], r["case"]))

    def table(self) -> pd.DataFrame:
        """One row per finished case: its labels, method parameters and scalar metrics."""
        from .schema import typed

        rows = []
        for path in sorted(self.root.glob("*/metrics.json")):
            m = read_json(path)
            rows.append(flatten_metrics(m))
        return typed(pd.DataFrame(rows))


def flatten_metrics(m: dict) -> dict:
    cfg = m["config"]
    row = {"key": m["key"], "suite": cfg["suite"], "scale": cfg["scale"], "target": cfg["target"]["name"],
           "sde": cfg["sde"]["name"], "model": cfg["model"]["kind"], "method": cfg["method"]["name"],
           "seed": cfg["seed"], **{f"param_{k}": v for k, v in cfg["method"]["params"].items()}}
    for name, value in m["metrics"].items():
        if isinstance(value, dict):
            row.update({f"{name}.{k}": v for k, v in value.items() if isinstance(v, (int, float))})
        else:
            row[name] = value
    return row
