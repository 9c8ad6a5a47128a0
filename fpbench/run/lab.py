"""The error-injection lab: exact scores with planted errors (``fpbench.core.planted``) through the
paper's samplers and W2^2, with no training. ``suites/lab.toml`` declares the planted models and the
scales; ``run_lab`` measures every model once and stores it, so a rerun resumes.

Per target, the planted models are (``lab_specs``):

- ``exact``: the exact score (eps = 0), the oracle every other model is read against;
- ``gradient``: phi = log p + eps b(t) psi0(x), each shape and eps of ``[families.gradient]`` (L1);
- ``solenoidal`` and ``twin``: s* + eps J grad p and s* + eps grad p, each eps of ``[families.solenoidal]``
  (L2, L4);
- ``pulse``: a unit-mass time pulse at each position of ``[families.pulse]`` (L3).

Every model is measured (``measure``) with the same random numbers: the same prior points and Brownian
increments for every eps (common random numbers), the same p0 sample, the same collocation points. Its
record: the three W2^2 of Tables 1-3 with bootstrap sd and interval, the target's noise floor, the
discretisation bounds of the model's own ODE and SDE (coupling bounds, ``fpbench.core.samplers``),
R~ (eq. 20; potential models), R^s (eq. 32), the score error E|s - s*|^2 (t ~ U(t0, T), x ~ p_t, its
p-weighted L2 size) and the mean |curl| over the box.

Records go to ``<root>/lab/<scale>/<label>-<hash>.json`` (the hash of the model's spec and the scale's
settings), written atomically.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import pandas as pd
import torch

from ..core import metrics as mx
from ..core import operators as ops
from ..core import planted as pl
from ..core import streams
from ..core.errors import FpbenchError
from ..core.models import ExactScore
from ..core.residuals import PAPER_BOX, PAPER_T0, log_fp_residual_mc, score_fp_residual_mc
from ..core.samplers import ode_discretisation, refined_grid, sample_pair, sde_discretisation
from ..core.sde import make_sde
from ..core.targets import make_target
from .schema import LAB_EXACT_BESIDE, lab_record_problem, typed_lab
from .store import Store, write_json

LAB_FILE = "lab.toml"
T0 = PAPER_T0  # the residuals' and the score error's smallest t (the authors' t0, REFERENCE.md)
LAB_TABLES = ("lab", "families", "scales")  # a lab file's tables (suites/lab.toml)
FAMILY_TABLES = ("gradient", "solenoidal", "pulse")  # [families.*]: the planted errors (twin shares solenoidal's)
SCALE_KEYS = {"about", "n", "nfe", "dtype", "floor_reps", "residual_points", "score_points", "disc_points",
              "n_boot", "targets", "gradient_eps", "shapes", "solenoidal_eps", "positions"}


class LabError(FpbenchError):
    """A malformed lab file or an unknown scale."""


def lab_path() -> Path:
    from .suite import SUITES_DIR, find_declaration

    found = find_declaration(LAB_FILE)
    if found is None:
        raise LabError(f"no {LAB_FILE} in ./suites or {SUITES_DIR}")
    return found


def load_lab(scale: str, path: Path | None = None) -> dict:
    """The lab's declaration with ``[scales.<scale>]`` applied: the scale's ``targets`` (labels),
    ``gradient_eps``, ``shapes``, ``solenoidal_eps`` and ``positions`` narrow the families."""
    from .suite import read_declaration

    path = path or lab_path()
    data = read_declaration(path, LabError, "lab file")
    missing = [table for table in LAB_TABLES if not isinstance(data.get(table), dict)]
    if missing:
        raise LabError(f"lab file {path} lacks the table(s) {', '.join(f'[{t}]' for t in missing)}")
    scales = data["scales"]
    if scale not in scales:
        raise LabError(f"unknown lab scale {scale!r}; known: {', '.join(scales)}")
    settings = dict(scales[scale])
    unknown = set(settings) - SCALE_KEYS
    if unknown:
        raise LabError(f"unknown key(s) {sorted(unknown)} in [scales.{scale}] of {path}; known: {sorted(SCALE_KEYS)}")
    if settings.get("nfe", 0) < 10:
        raise LabError(f"[scales.{scale}] nfe must be at least 10 (the refined grid splits the last 10 steps)")
    lab, families = data["lab"], data["families"]
    if set(FAMILY_TABLES) - set(families) or "targets" not in lab or "sde" not in lab:
        raise LabError(f"lab file {path}: [lab] needs sde and targets, [families] the tables "
                       f"{', '.join(FAMILY_TABLES)}")
    labels = [t["label"] for t in lab["targets"]]
    wanted = settings.pop("targets", labels)
    if set(wanted) - set(labels):
        raise LabError(f"unknown target label(s) {sorted(set(wanted) - set(labels))}; known: {labels}")
    families["gradient"]["eps"] = settings.pop("gradient_eps", families["gradient"]["eps"])
    families["gradient"]["shapes"] = settings.pop("shapes", families["gradient"]["shapes"])
    families["solenoidal"]["eps"] = settings.pop("solenoidal_eps", families["solenoidal"]["eps"])
    families["pulse"]["positions"] = settings.pop("positions", families["pulse"]["positions"])
    return {"scale": scale, "sde": lab["sde"], "targets": [t for t in lab["targets"] if t["label"] in wanted],
            "families": families, "settings": settings}


def lab_specs(lab: dict) -> list[dict]:
    """One spec per planted model (module docstring), in the order they are run and reported."""
    fam, specs = lab["families"], []
    for target in lab["targets"]:
        base = {"target": target["label"]}
        specs.append({**base, "family": "exact", "eps": 0.0})
        for shape in fam["gradient"]["shapes"]:
            specs += [{**base, "family": "gradient", "eps": e, "shape": shape} for e in fam["gradient"]["eps"]]
        for eps in fam["solenoidal"]["eps"]:
            specs += [{**base, "family": "solenoidal", "eps": eps}, {**base, "family": "twin", "eps": eps}]
        specs += [{**base, "family": "pulse", "eps": fam["pulse"]["eps"], "position": t_c}
                  for t_c in fam["pulse"]["positions"]]
    return specs


def make_lab_target(lab: dict, label: str):
    spec = next(t for t in lab["targets"] if t["label"] == label)
    return make_target(spec["name"], **spec.get("params", {}))


def build_planted(spec: dict, lab: dict, target, sde):
    """The model of one spec (``fpbench.core.planted``)."""
    fam = lab["families"]
    if spec["family"] == "exact":
        return ExactScore(target, sde)
    if spec["family"] == "gradient":
        g = fam["gradient"]
        pulse = pl.Pulse(g["pulse"]["centre"], g["pulse"]["width"])
        bump = pl.Bump(spec["shape"], tuple(g["centre"]), g["radius"], pulse)
        return pl.GradientError(target, sde, spec["eps"], bump)
    if spec["family"] == "pulse":
        p = fam["pulse"]
        pulse = pl.Pulse(spec["position"], p["width"], unit_mass=True)
        bump = pl.Bump(p["shape"], tuple(p["centre"]), p["radius"], pulse)
        return pl.GradientError(target, sde, spec["eps"], bump)
    if spec["family"] == "solenoidal":
        return pl.SolenoidalError(target, sde, spec["eps"])
    if spec["family"] == "twin":
        return pl.GradientError(target, sde, spec["eps"], pl.DensityTwin(target, sde))
    raise LabError(f"unknown planted family {spec['family']!r}")


def spec_key(spec: dict, lab: dict) -> str:
    """The record's file stem: label and the hash of everything that determines its numbers."""
    settings = {k: v for k, v in lab["settings"].items() if k != "about"}  # a label, not a setting
    content = {"spec": spec, "sde": lab["sde"], "families": lab["families"], "settings": settings,
               "target": next(t for t in lab["targets"] if t["label"] == spec["target"]), "version": 1}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]
    name = "-".join(str(spec[k]) for k in ("target", "family", "shape", "eps", "position") if k in spec)
    return f"{name}-{digest}"


def target_floor(lab: dict, label: str, target, store: Store) -> mx.NoiseFloor:
    """The grid W2^2's noise floor at n: independent pairs of p0 draws (cached per target and settings)."""
    s = lab["settings"]
    spec = {"lab_floor": 1, "target": next(t for t in lab["targets"] if t["label"] == label), "n": s["n"],
            "reps": s["floor_reps"]}
    return store.cached_floor(spec, lambda: mx.grid_noise_floor(lambda k, g: target.sample(k, g), s["n"],
                                                                 s["floor_reps"], seed=streams.EXACT_FLOOR))


def score_error(model, target, sde, n: int, generator) -> tuple[float, float]:
    """(E|s - s*|^2, E|s*|^2) with t ~ U(t0, T), x ~ p_t (float64): the error's p-weighted L2 size."""
    x0 = target.sample(n, generator, dtype=torch.float64)
    t = T0 + (sde.T - T0) * torch.rand(n, generator=generator, dtype=torch.float64)
    xt, _ = sde.kernel_sample(x0, t, generator)
    exact = target.score(xt, t, sde)
    err = model.score(xt, t).detach() - exact
    return float((err**2).sum(-1).mean()), float((exact**2).sum(-1).mean())


def mean_curl(model, dim: int, sde, n: int, generator) -> float:
    """Mean |curl s| (``fpbench.core.operators.curl``) over the paper's box x U(0, T), float64."""
    x = PAPER_BOX.sample(n, dim, generator, torch.float64)
    t = sde.T * torch.rand(n, generator=generator, dtype=torch.float64)
    return float(ops.curl(lambda xx, tt: model.score(xx, tt, create_graph=True), x, t).abs().mean())


def measure(spec: dict, lab: dict, target, sde, floor: mx.NoiseFloor) -> dict:
    """Every number of one planted model (module docstring)."""
    s, started = lab["settings"], time.perf_counter()
    model = build_planted(spec, lab, target, sde)
    score = lambda x, t: model.score(x, t)  # noqa: E731
    ts = refined_grid(sde.T, s["nfe"])
    dtype = getattr(torch, s["dtype"])
    x_ode, x_sde = sample_pair(score, sde, s["n"], target.dim, ts, seed=streams.EXACT_SAMPLERS, chunk=s["n"],
                               dtype=dtype)
    x_p0 = target.sample(s["n"], streams.fixed(streams.EXACT_P0))
    hist = {"ode": mx.grid_histogram(x_ode), "sde": mx.grid_histogram(x_sde), "p0": mx.grid_histogram(x_p0)}
    out = {**spec}
    estimates = mx.table_estimates(hist, floor.mean, s["n"], n_boot=s["n_boot"], seed=streams.LAB_BOOTSTRAP)
    for name, est in estimates.items():
        out.update({name: est.value, f"{name}_sd": est.boot_sd, f"{name}_low": est.ci_low, f"{name}_high": est.ci_high})
    out.update({"floor_mean": floor.mean, "floor_sd": floor.sd, "floor_q95": floor.q95, "n": s["n"], "nfe": s["nfe"]})
    gen = streams.fixed(streams.LAB_DISCRETISATION)
    x_T = sde.prior_sample(s["disc_points"], target.dim, gen, torch.float64)
    out["disc_ode"] = ode_discretisation(score, sde, x_T, ts)
    out["disc_sde"] = sde_discretisation(score, sde, x_T, ts, gen)
    gen = streams.fixed(streams.LAB_RESIDUAL)
    out["log_fp_residual"] = (float(log_fp_residual_mc(model.potential, sde, target.dim, s["residual_points"],
                                                        PAPER_BOX, T0, gen, torch.float64))
                              if model.is_potential else math.nan)
    gen = streams.fixed(streams.LAB_SCORE)
    out["score_fp_residual"] = float(score_fp_residual_mc(lambda x, t: model.score(x, t, create_graph=True), sde,
                                                          target.dim, s["score_points"], PAPER_BOX, T0, gen,
                                                          torch.float64))
    out["score_error"], out["exact_score_size"] = score_error(model, target, sde, s["score_points"], gen)
    out["curl_mean"] = mean_curl(model, target.dim, sde, s["score_points"], gen)
    out["seconds"] = time.perf_counter() - started
    return out


def _measure_and_store(spec: dict, lab: dict, floor: dict, record_path: Path, threads: int | None) -> dict:
    """One planted model measured and written (atomically); run in a worker process or here."""
    if threads:
        torch.set_num_threads(threads)
    record = measure(spec, lab, make_lab_target(lab, spec["target"]), make_sde(lab["sde"]), mx.NoiseFloor(**floor))
    write_json(record_path, record)
    return record


def run_lab(scale: str, root: str | None = None, log=print, path: Path | None = None, workers: int = 1) -> pd.DataFrame:
    """Measure every planted model of the scale not yet in the store (``workers`` processes of one
    thread each, or here); return all records as a frame. Every model's numbers are the same either way."""
    lab = load_lab(scale, path)
    store = Store(Path(root) if root else Path("results")).check_writable()
    folder = store.root / "lab" / scale
    specs = lab_specs(lab)
    stored = {i: _stored_record(folder / f"{spec_key(spec, lab)}.json") for i, spec in enumerate(specs)}
    pending = [i for i, record in stored.items() if record is None]
    floors = {label: target_floor(lab, label, make_lab_target(lab, label), store).to_dict()
              for label in dict.fromkeys(specs[i]["target"] for i in pending)}
    jobs = [(specs[i], lab, floors[specs[i]["target"]], folder / f"{spec_key(specs[i], lab)}.json") for i in pending]
    for n, (i, record) in enumerate(zip(pending, _measure_all(jobs, workers)), 1):
        stored[i] = record
        log(f"[lab {n}/{len(pending)}] {jobs[n - 1][3].stem[:-13]}: W2^2 ODE-SDE {record['w2_ode_sde']:.4g}, "
            f"ODE-p0 {record['w2_ode_p0']:.4g}, SDE-p0 {record['w2_sde_p0']:.4g} ({record['seconds']:.0f} s)")
    frame = pd.DataFrame([stored[i] for i in range(len(specs))])
    lead = [c for c in ("target", "family", "shape", "eps", "position") if c in frame]
    return typed_lab(with_exact_columns(frame[lead + sorted(set(frame.columns) - set(lead))]))


def _stored_record(path: Path) -> dict | None:
    """The record at ``path``, None when there is none (an unreadable one is set aside by ``Store.cached`` and
    measured again); a LabError naming a readable record that is not a lab record
    (``schema.lab_record_problem``): fpbench never measures over a record it cannot read as one."""
    record = Store.cached(path)
    if record is not None and (problem := lab_record_problem(record)):
        raise LabError(f"lab record {path} {problem} (fpbench/run/schema.py, LAB_FIELDS): move it away to measure "
                       "that model again")
    return record


def _measure_all(jobs: list, workers: int):
    """The records of ``jobs``, in order, as they finish in order."""
    if workers <= 1:
        for job in jobs:
            yield _measure_and_store(*job, threads=None)
        return
    from .execute import process_pool

    with process_pool(workers) as pool:
        futures = [pool.submit(_measure_and_store, *job, 1) for job in jobs]
        for future in futures:
            yield future.result()


def with_exact_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Each row with its target's exact-score numbers beside it (``exact_*``): the oracle a planted
    model is read against (its gap, distances and discretisation bounds)."""
    exact = df[df["family"] == "exact"].set_index("target")
    for col in LAB_EXACT_BESIDE:
        df[f"exact_{col}"] = df["target"].map(exact[col])
    return df
