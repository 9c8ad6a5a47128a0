"""Suites: TOML files that declare targets x method parameters x seeds at named scales.

A suite file has a ``[suite]`` table (name, description, targets, sde, method, and ``sweep``: the
method parameters to cross), a ``[model]`` table, optional ``[train]``, ``[sample]`` and
``[metrics]`` tables over ``fpbench.config.PAPER_DEFAULTS``, and ``[scales.NAME]`` tables
(``seeds`` plus any of the three) for at least ``smoke``, ``quick`` and ``paper``.
A case is one fully resolved configuration; its hash names its results directory.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .config import PAPER_DEFAULTS, deep_merge
from .methods import make_method
from .models import MODELS
from .sde import SDES
from .targets import TARGETS

SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"
REQUIRED_SCALES = ("smoke", "quick", "paper")
SECTIONS = ("train", "sample", "metrics")


class SuiteError(ValueError):
    """A malformed or inconsistent suite file."""


@dataclass(frozen=True)
class Case:
    """One fully resolved configuration: target x SDE x model x method x train x sample x metrics x seed."""

    config: dict

    @property
    def key(self) -> str:
        """Hash of the resolved configuration (labels excluded): the results directory's name."""
        hashed = {k: v for k, v in self.config.items() if k not in ("suite", "scale")}
        blob = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        params = ",".join(f"{k}={v}" for k, v in self.config["method"]["params"].items())
        return f"{self.config['target']['name']}/{self.config['method']['name']}({params})/seed{self.config['seed']}"


def find_suite(name_or_path: str) -> Path:
    """A suite by name (``suites/NAME.toml``) or by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        return path
    for folder in (Path("suites"), SUITES_DIR):  # the working directory's suites first
        candidate = folder / f"{name_or_path}.toml"
        if candidate.exists():
            return candidate
    known = ", ".join(list_suites())
    raise SuiteError(f"unknown suite {name_or_path!r}; known: {known} (or a path to a .toml file)")


def load_suite(name_or_path: str) -> dict:
    path = find_suite(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SuiteError(f"malformed suite file {path}: {err}") from None
    validate_suite(data, path)
    return data


def validate_suite(data: dict, path: Path) -> None:
    """Check the structure and names; every problem is a SuiteError naming the file and the key."""
    suite = data.get("suite")
    if not isinstance(suite, dict):
        raise SuiteError(f"{path}: missing [suite] table")
    for key in ("name", "targets", "sde", "method"):
        if key not in suite:
            raise SuiteError(f"{path}: [suite] needs {key!r}")
    for target in suite["targets"]:
        if target not in TARGETS:
            raise SuiteError(f"{path}: unknown target {target!r}; known: {', '.join(TARGETS)}")
    if suite["sde"] not in SDES:
        raise SuiteError(f"{path}: unknown SDE {suite['sde']!r}; known: {', '.join(SDES)}")
    if "score_models" in suite:
        try:
            find_suite(suite["score_models"])
        except SuiteError as err:
            raise SuiteError(f"{path}: [suite] score_models: {err}") from None
    kind = data.get("model", {}).get("kind", "potential")
    if kind not in MODELS:
        raise SuiteError(f"{path}: unknown model kind {kind!r}; known: {', '.join(MODELS)}")
    for params in _sweep(suite):
        try:
            make_method(suite["method"], **params)
        except ValueError as err:
            raise SuiteError(f"{path}: {err}") from None
    scales = data.get("scales", {})
    missing = [s for s in REQUIRED_SCALES if s not in scales]
    if missing:
        raise SuiteError(f"{path}: missing scale(s) {missing}; every suite defines {list(REQUIRED_SCALES)}")
    for name, scale in scales.items():
        _check_keys(scale, {"seeds", *SECTIONS}, f"{path}: [scales.{name}]")
        for section in SECTIONS:
            _check_keys(scale.get(section, {}), set(PAPER_DEFAULTS[section]), f"{path}: [scales.{name}.{section}]")
    for section in SECTIONS:
        _check_keys(data.get(section, {}), set(PAPER_DEFAULTS[section]), f"{path}: [{section}]")


def _check_keys(table: dict, allowed: set, where: str) -> None:
    if not isinstance(table, dict):
        raise SuiteError(f"{where} must be a table")
    unknown = set(table) - allowed
    if unknown:
        raise SuiteError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _sweep(suite: dict) -> list[dict]:
    sweep = suite.get("sweep", {})
    names = sorted(sweep)
    values = [v if isinstance(v, list) else [v] for v in (sweep[n] for n in names)]
    return [dict(zip(names, combo)) for combo in itertools.product(*values)] or [{}]


def expand(data: dict, scale: str, seeds: int | None = None) -> list[Case]:
    """All cases of a suite at a scale; ``seeds`` overrides the scale's seed count."""
    if scale not in data["scales"]:
        raise SuiteError(f"unknown scale {scale!r} for suite {data['suite']['name']!r}; "
                         f"known: {', '.join(data['scales'])}")
    sc = data["scales"][scale]
    resolved = {s: deep_merge(deep_merge(PAPER_DEFAULTS[s], data.get(s, {})), sc.get(s, {})) for s in SECTIONS}
    n_seeds = seeds if seeds is not None else sc.get("seeds", 1)
    model = {"kind": "potential", **data.get("model", {})}
    cases = []
    for target, params, seed in itertools.product(data["suite"]["targets"], _sweep(data["suite"]), range(n_seeds)):
        cases.append(Case({
            "suite": data["suite"]["name"], "scale": scale, "seed": seed,
            "target": {"name": target, "params": data.get("target_params", {}).get(target, {})},
            "sde": {"name": data["suite"]["sde"], "params": data.get("sde_params", {})},
            "model": model, "method": {"name": data["suite"]["method"], "params": params}, **resolved,
        }))
    return cases


def list_suites() -> list[str]:
    return sorted({p.stem for folder in (Path("suites"), SUITES_DIR) for p in folder.glob("*.toml")})
