"""Suites: TOML files that declare targets x method parameters x seeds at named scales.

A suite file has a ``[suite]`` table (name, description, targets, sde, method, and ``sweep``: the
method parameters to cross) or, for several methods, ``[[methods]]`` tables (name, model kind,
params, sweep; they replace ``method``/``sweep``), a ``[model]`` table, optional ``[train]``, ``[sample]`` and
``[metrics]`` tables over ``fpbench.run.config.PAPER_DEFAULTS``, and ``[scales.NAME]`` tables
(``seeds`` plus any of the three) for at least ``smoke``, ``quick`` and ``paper``. Scales shared by
several suites are declared once, in ``suites/scales/NAME.toml``; a suite takes them with ``[suite]
scales = "NAME"`` and its own ``[scales.*]`` tables are merged over them (e.g. its number of seeds).
A scale may name another with ``base = "NAME"``: it takes that scale's train, sample and metrics settings
and sets only what differs (its ``seeds`` and ``about`` stay its own).
A case is one fully resolved configuration; its hash names its results directory.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.errors import FpbenchError
from ..core.models import MODELS, make_model
from ..core.sde import SDES, make_sde
from ..core.targets import TARGETS, USER_DATA_TARGETS, make_target
from ..train.methods import make_method
from .config import PAPER_DEFAULTS, SETTING_RANGES, deep_merge

SUITES_DIR = Path(__file__).resolve().parents[2] / "suites"
REQUIRED_SCALES = ("smoke", "quick", "paper")
SECTIONS = ("train", "sample", "metrics")
SUITE_KEYS = {"name", "description", "targets", "target_sweep", "sde", "method", "sweep", "claims", "score_models",
              "baseline", "scales"}
TOP_LEVEL_KEYS = {"suite", "methods", "model", "target_params", "sde_params", "scales", *SECTIONS}


class SuiteError(FpbenchError):
    """A malformed or inconsistent suite file."""


TRAINING_SECTIONS = ("target", "sde", "model", "method", "train", "seed")  # what the weights depend on


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
    def train_key(self) -> str:
        """Hash of the settings that determine the trained weights (``TRAINING_SECTIONS``): cases that differ
        only in how they are sampled or measured share their training (``Store.trained_source``)."""
        hashed = {k: self.config[k] for k in TRAINING_SECTIONS if k in self.config}
        blob = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        cfg = self.config
        params = ",".join(f"{k}={v}" for k, v in cfg["method"]["params"].items())
        target = cfg["target"]["name"] + ("(" + ",".join(f"{k}={v}" for k, v in cfg["target"]["params"].items()) + ")"
                                          if cfg["target"]["params"] else "")
        sde = "" if cfg["sde"]["name"] == "ou" else f"{cfg['sde']['name']}/"
        if cfg["model"].get("kind") == "external":  # a user's model (fpbench.run.external): named by its spec
            return f"{sde}{target}/external({cfg['model']['spec']})/seed{cfg['seed']}"
        kind = "" if cfg["model"].get("kind", "potential") == "potential" else f"{cfg['model']['kind']}:"
        return f"{sde}{target}/{kind}{cfg['method']['name']}({params})/seed{cfg['seed']}"


DECLARATION_FOLDERS = (Path("suites"), SUITES_DIR)  # where a name is looked up: the working directory's first


def find_suite(name_or_path: str) -> Path:
    """A suite by name (``suites/NAME.toml``) or by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        return path
    found = find_declaration(f"{name_or_path}.toml")
    if found is None:
        known = ", ".join(list_suites())
        raise SuiteError(f"unknown suite {name_or_path!r}; known: {known} (or a path to a .toml file)")
    return found


def find_declaration(file_name: str) -> Path | None:
    """The declaration file ``file_name`` (a suite, a shared scales file, the lab) in ./suites or beside the
    package, None where there is none."""
    return next((folder / file_name for folder in DECLARATION_FOLDERS if (folder / file_name).exists()), None)


def read_declaration(path: Path, error: type[FpbenchError] = SuiteError, what: str = "suite file") -> dict:
    """A declaration file's TOML; ``error`` names the file when it cannot be read or parsed."""
    try:
        return tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as err:
        raise error(f"malformed {what} {path}: {err}") from None
    except OSError as err:
        raise error(f"cannot read {what} {path}: {err.strerror or err}") from None


def load_suite(name_or_path: str) -> dict:
    path = find_suite(name_or_path)
    data = read_declaration(path)
    if "lab" in data and "suite" not in data:
        raise SuiteError(f"{path} is the error-injection lab, not a training suite: run it with "
                         "`fpbench lab --scale SCALE`")
    data = with_scale_bases(with_shared_scales(data, path), path)
    validate_suite(data, path)
    return data


def with_shared_scales(data: dict, path: Path) -> dict:
    """The suite with its ``[suite] scales`` file's scales under its own ``[scales.*]`` tables."""
    name = data.get("suite", {}).get("scales") if isinstance(data.get("suite"), dict) else None
    if name is None:
        return data
    candidates = [path.parent / "scales" / f"{name}.toml", SUITES_DIR / "scales" / f"{name}.toml"]
    shared_path = next((c for c in candidates if c.exists()), None)
    if shared_path is None:
        raise SuiteError(f"{path}: [suite] scales = {name!r}: no file {candidates[0]}")
    shared = read_declaration(shared_path, what="scales file")
    _check_keys(shared, {"scales"}, f"{shared_path}")
    return {**data, "scales": deep_merge(shared.get("scales", {}), data.get("scales", {}))}


def with_scale_bases(data: dict, path: Path) -> dict:
    """The suite with every ``base = "NAME"`` scale resolved: the base's sections under the scale's own."""
    scales = data.get("scales", {})
    if not isinstance(scales, dict):
        return data  # validate_suite names the problem
    return {**data, "scales": {name: _resolved_scale(scales, name, path, ()) for name in scales}}


def _resolved_scale(scales: dict, name: str, path: Path, chain: tuple) -> dict:
    """One scale with its chain of bases merged in (the nearest base's settings win over a farther one's)."""
    scale = scales[name]
    if not isinstance(scale, dict) or "base" not in scale:
        return scale
    base = scale["base"]
    where = f"{path}: [scales.{name}] base = {base!r}"
    if not isinstance(base, str) or base not in scales:
        raise SuiteError(f"{where}: no such scale; known: {', '.join(scales)}")
    if base in (*chain, name):
        raise SuiteError(f"{where}: the bases form a cycle ({' -> '.join((*chain, name, base))})")
    inherited = _resolved_scale(scales, base, path, (*chain, name))
    if not isinstance(inherited, dict):
        raise SuiteError(f"{where}: [scales.{base}] must be a table")
    own = {k: v for k, v in scale.items() if k != "base"}
    merged = {s: _merged_section(inherited.get(s, {}), own.get(s, {})) for s in SECTIONS if s in inherited or s in own}
    return {**own, **merged}


def _merged_section(inherited, own):
    """A base's section with the scale's own over it (a malformed one is left to validate_suite)."""
    return deep_merge(inherited, own) if isinstance(inherited, dict) and isinstance(own, dict) else own or inherited


def validate_suite(data: dict, path: Path) -> None:
    """Check the structure and names; every problem is a SuiteError naming the file and the key."""
    suite = data.get("suite")
    if not isinstance(suite, dict):
        raise SuiteError(f"{path}: missing [suite] table")
    _check_keys(data, TOP_LEVEL_KEYS, f"{path}: top level")
    _check_keys(suite, SUITE_KEYS, f"{path}: [suite]")
    for key in ("name", "targets", "sde"):
        if key not in suite:
            raise SuiteError(f"{path}: [suite] needs {key!r}")
    if "method" not in suite and "methods" not in data:
        raise SuiteError(f"{path}: [suite] needs 'method' (or [[methods]] tables)")
    for target in suite["targets"]:
        if target not in TARGETS + USER_DATA_TARGETS and ":" not in target:  # module:Class: a user's target
            raise SuiteError(f"{path}: unknown target {target!r}; known: {', '.join(TARGETS + USER_DATA_TARGETS)} "
                             "or module:Class")
    for sde in _as_list(suite["sde"]):
        if sde not in SDES:
            raise SuiteError(f"{path}: unknown SDE {sde!r}; known: {', '.join(SDES)}")
        try:
            make_sde(sde, **_sde_params(data, sde))
        except ValueError as err:
            raise SuiteError(f"{path}: [sde_params]: {err}") from None
    if "score_models" in suite:
        try:
            find_suite(suite["score_models"])
        except SuiteError as err:
            raise SuiteError(f"{path}: [suite] score_models: {err}") from None
    for spec in method_specs(data):
        if spec["model"] not in MODELS:
            raise SuiteError(f"{path}: unknown model kind {spec['model']!r}; known: {', '.join(MODELS)}")
        for params in _sweep(spec):
            try:
                make_method(spec["name"], **params)
            except ValueError as err:
                raise SuiteError(f"{path}: {err}") from None
    try:
        baseline_of(data)
    except SuiteError as err:
        raise SuiteError(f"{path}: {err}") from None
    model_params = {k: v for k, v in data.get("model", {}).items() if k != "kind"}
    for kind in dict.fromkeys(spec["model"] for spec in method_specs(data)):  # a misspelt key fails here, not
        try:  # in every case at run time
            make_model(kind, 2, **model_params)
        except ValueError as err:
            raise SuiteError(f"{path}: [model]: {err}") from None
    scales = data.get("scales", {})
    missing = [s for s in REQUIRED_SCALES if s not in scales]
    if missing:
        raise SuiteError(f"{path}: missing scale(s) {missing}; every suite defines {list(REQUIRED_SCALES)}")
    for name, scale in scales.items():
        _check_keys(scale, {"seeds", "about", *SECTIONS}, f"{path}: [scales.{name}]")
        for section in SECTIONS:
            _check_keys(scale.get(section, {}), _allowed(section), f"{path}: [scales.{name}.{section}]")
        _check_values(data, scale, f"{path}: [scales.{name}]")
    for section in SECTIONS:
        _check_keys(data.get(section, {}), _allowed(section), f"{path}: [{section}]")


def _check_values(data: dict, scale: dict, where: str) -> None:
    """Every resolved numeric setting of a scale has its declared type and range (config.SETTING_RANGES),
    the lr stages are positive with fractions summing to 1, and there is at least one seed."""
    seeds = scale.get("seeds", 1)
    if type(seeds) is not int or seeds < 1:
        raise SuiteError(f"{where}: seeds = {seeds!r}; it must be a whole number >= 1")
    for section, ranges in SETTING_RANGES.items():
        resolved = deep_merge(deep_merge(PAPER_DEFAULTS[section], data.get(section, {})), scale.get(section, {}))
        for key, (kind, low) in ranges.items():
            if key not in resolved:
                continue
            value = resolved[key]
            ok_type = type(value) is int if kind is int else isinstance(value, (int, float)) and type(value) is not bool
            if not ok_type or not value >= low:
                what = "a whole number" if kind is int else "a number"
                raise SuiteError(f"{where}: {section}.{key} = {value!r}; it must be {what} >= {low:g}")
    stages = deep_merge(PAPER_DEFAULTS["train"], deep_merge(data.get("train", {}), scale.get("train", {})))["lr_stages"]
    valid = all(isinstance(s, list) and len(s) == 2 and all(isinstance(v, (int, float)) and v > 0 for v in s)
                for s in stages)
    if not valid or abs(sum(s[1] for s in stages) - 1) > 1e-6:
        raise SuiteError(f"{where}: train.lr_stages = {stages!r}; each stage is [lr > 0, fraction > 0] and the "
                         "fractions sum to 1")


def _allowed(section: str) -> set:
    """Keys a suite may set: the defaults', plus the point-distance settings of the metrics (which
    are absent from the defaults so that grid suites keep their case keys)."""
    from .config import DERIVED_METRICS, POINT_DEFAULTS

    optional = set(POINT_DEFAULTS) | set(DERIVED_METRICS) if section == "metrics" else set()
    return set(PAPER_DEFAULTS[section]) | optional


def _check_keys(table: dict, allowed: set, where: str) -> None:
    if not isinstance(table, dict):
        raise SuiteError(f"{where} must be a table")
    unknown = set(table) - allowed
    if unknown:
        raise SuiteError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _sweep(spec: dict) -> list[dict]:
    """Fixed ``params`` crossed with every combination of the ``sweep`` values."""
    sweep = spec.get("sweep", {})
    names = sorted(sweep)
    values = [v if isinstance(v, list) else [v] for v in (sweep[n] for n in names)]
    return [{**spec.get("params", {}), **dict(zip(names, combo))} for combo in itertools.product(*values)] or [{}]


def method_specs(data: dict) -> list[dict]:
    """The suite's methods as [{name, model, params, sweep}]: its ``[[methods]]`` tables, or the one
    ``[suite] method`` with its ``sweep`` and the ``[model]`` kind."""
    default_kind = data.get("model", {}).get("kind", "potential")
    if "methods" in data:
        specs = data["methods"]
        if not isinstance(specs, list) or not all(isinstance(m, dict) and "name" in m for m in specs):
            raise SuiteError(f"suite {data['suite'].get('name')!r}: [[methods]] entries need a 'name'")
        return [{"model": default_kind, "params": {}, "sweep": {}, **m} for m in specs]  # "label" is for reports
    suite = data["suite"]
    return [{"name": suite["method"], "model": default_kind, "params": {}, "sweep": suite.get("sweep", {})}]


def baseline_of(data: dict) -> tuple[dict, dict]:
    """The suite's baseline, the method every other is tested against, as (method spec, its parameters):
    ``[suite] baseline = "name(k=v, ...)"``, the first of the suite's methods of that name with exactly those
    parameters among its sweep; without it the suite's first method at its first parameters (``expand``'s
    first case). A method added with ``--method`` comes after the suite's own, so it is never the default."""
    specs = method_specs(data)
    text = data["suite"].get("baseline")
    if text is None:
        return specs[0], _sweep(specs[0])[0]
    name, params = _parse_call(text)
    for spec in specs:
        for candidate in _sweep(spec):
            if spec["name"] == name and candidate == params:
                return spec, candidate
    known = "; ".join(f"{s['name']}({', '.join(f'{k}={v}' for k, v in c.items())})" for s in specs for c in _sweep(s))
    raise SuiteError(f"[suite] baseline = {text!r} is none of the suite's methods: {known}")


def _parse_call(text: str) -> tuple[str, dict]:
    """``"name(k=v, ...)"`` (or ``"name"``) as (name, {k: v}), numbers read as numbers."""
    match = re.fullmatch(r"\s*([^()\s]+)\s*(?:\((.*)\))?\s*", text) if isinstance(text, str) else None
    if match is None:
        raise SuiteError(f"[suite] baseline = {text!r}; write it as \"name(param=value, ...)\", e.g. \"fp(w_r=0.0)\"")
    params = {}
    for item in filter(None, (part.strip() for part in (match.group(2) or "").split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SuiteError(f"[suite] baseline = {text!r}: {item!r} is not param=value")
        try:
            params[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            params[key.strip()] = value.strip()
    return match.group(1), params


def with_methods(data: dict, names: list[str]) -> dict:
    """A copy of the suite with each method in ``names`` (module:Class, file.py:Class or a registered
    name; its class's ``model_kind`` or the suite's model kind) run beside the suite's own methods."""
    if not names:
        return data
    out = copy.deepcopy(data)
    specs = method_specs(out)
    for name in names:
        try:
            method = make_method(name)
        except ValueError as err:
            raise SuiteError(f"--method {name}: {err}") from None
        specs.append({"name": name, "model": getattr(method, "model_kind", specs[0]["model"]), "params": {},
                      "sweep": {}, "label": f"{name.rpartition(':')[2]} (--method {name})"})
    out["methods"] = specs
    return out


def expand(data: dict, scale: str, seeds: int | None = None) -> list[Case]:
    """All cases of a suite at a scale; ``seeds`` overrides the scale's seed count."""
    if scale not in data["scales"]:
        raise SuiteError(f"unknown scale {scale!r} for suite {data['suite']['name']!r}; "
                         f"known: {', '.join(data['scales'])}")
    sc = data["scales"][scale]
    resolved = {s: deep_merge(deep_merge(PAPER_DEFAULTS[s], data.get(s, {})), sc.get(s, {})) for s in SECTIONS}
    n_seeds = seeds if seeds is not None else sc.get("seeds", 1)
    combos = [(spec, params) for spec in method_specs(data) for params in _sweep(spec)]
    target_sweep = _sweep({"sweep": data["suite"].get("target_sweep", {})})
    targets = [(name, {**data.get("target_params", {}).get(name, {}), **extra})
               for name in data["suite"]["targets"] for extra in target_sweep]
    cases = []
    for sde, (target, tparams), (spec, params), seed in itertools.product(
            _as_list(data["suite"]["sde"]), targets, combos, range(n_seeds)):
        cases.append(Case({
            "suite": data["suite"]["name"], "scale": scale, "seed": seed,
            "target": {"name": target, "params": tparams},
            "sde": {"name": sde, "params": _sde_params(data, sde)},
            "model": {**data.get("model", {}), "kind": spec["model"]},
            "method": {"name": spec["name"], "params": params}, **resolved,
        }))
    return cases


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _sde_params(data: dict, sde: str) -> dict:
    """``[sde_params]``: the parameters of the suite's one SDE, or a table per SDE name for several."""
    table = data.get("sde_params", {})
    per_name = bool(table) and all(isinstance(v, dict) for v in table.values())
    return table.get(sde, {}) if per_name else table


def list_suites() -> list[str]:
    """The training suites (``[suite]`` files) beside the package and in ./suites; not the lab."""
    return sorted({p.stem for folder in DECLARATION_FOLDERS for p in folder.glob("*.toml")
                   if "[suite]" in p.read_text()})


def build(case: Case, device=None):
    """(target, sde, model, method) of a case; the model initialised from the case's seed."""
    cfg = case.config
    target = make_target(cfg["target"]["name"], **cfg["target"]["params"])
    sde = make_sde(cfg["sde"]["name"], **cfg["sde"]["params"])
    torch.manual_seed(cfg["seed"])
    params = {k: v for k, v in cfg["model"].items() if k != "kind"}
    model = make_model(cfg["model"]["kind"], target.dim, **params).to(getattr(torch, cfg["train"]["dtype"]))
    method = make_method(cfg["method"]["name"], **cfg["method"]["params"])
    return target, sde, model.to(device), method


LEVELS_SCALE = "converged"  # the authors' levels (R~ among them) are measured with this scale's paper cases


def level_case(target: str, w_r: float) -> Case:
    """The paper suite's case (``LEVELS_SCALE``, seed 0) whose settings the authors' level of (target, w_R) is
    measured with (``fpbench reference levels``), and a trained model's R~ is compared at."""
    return next(c for c in expand(load_suite("paper"), LEVELS_SCALE, seeds=1)
                if c.config["target"]["name"] == target and c.config["method"]["params"]["w_r"] == w_r)
