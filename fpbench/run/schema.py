"""The results schema: one definition of every column of a results frame (``load_results``,
``Store.table``), with its type and meaning. ``store.flatten_metrics`` turns a case's stored record into
one row of these columns (nested metrics as ``name.field``); ``typed`` gives a frame the declared dtypes
and refuses a column the schema does not declare (tests run the pipeline and check every column it
stores is here), so a new metric is declared once, here, before anything reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..core.errors import FpbenchError


@dataclass(frozen=True)
class Field:
    dtype: str  # a pandas dtype (Int64: integers that may be missing in a frame of mixed cases)
    meaning: str


def _w2(name: str, what: str) -> dict[str, Field]:
    return {f"{name}.value": Field("float64", f"{what}: W2² estimate (grid, exact or sliced: the case's distance)"),
            f"{name}.ci_low": Field("float64", f"{what}: 95% bootstrap interval, low"),
            f"{name}.ci_high": Field("float64", f"{what}: 95% bootstrap interval, high"),
            f"{name}.boot_sd": Field("float64", f"{what}: bootstrap sd"),
            f"{name}.floor": Field("float64", f"{what}: the noise floor's mean at this n"),
            f"{name}.n": Field("Int64", f"{what}: samples per set")}


def _floor(name: str, what: str) -> dict[str, Field]:
    return {f"{name}.{k}": Field("Int64" if k in ("n", "reps") else "float64", f"{what}: {meaning}")
            for k, meaning in (("mean", "mean over replicates"), ("sd", "sd over replicates"),
                               ("q95", "95th percentile"), ("n", "samples per draw"), ("reps", "replicates"))}


FIELDS: dict[str, Field] = {
    "key": Field("string", "the case's key: hash of its resolved configuration (its results directory)"),
    "suite": Field("string", "suite name"),
    "scale": Field("string", "scale name"),
    "target": Field("string", "target name (fpbench.core.targets)"),
    "sde": Field("string", "forward SDE (fpbench.core.sde)"),
    "model": Field("string", "model kind: potential, score, or external (fpbench evaluate)"),
    "method": Field("string", "training method name"),
    "seed": Field("Int64", "the case's seed"),
    **_w2("w2_ode_sde", "Table 1, W2²(p_ODE, p_SDE)"),
    **_w2("w2_ode_p0", "Table 2, W2²(p_ODE, p0)"),
    **_w2("w2_sde_p0", "Table 3, W2²(p_SDE, p0)"),
    **_w2("w2_ode_sde_sliced", "Table 1 by the sliced W2² (point distances, beside the exact one)"),
    **_w2("w2_ode_p0_sliced", "Table 2 by the sliced W2² (point distances, beside the exact one)"),
    **_w2("w2_sde_p0_sliced", "Table 3 by the sliced W2² (point distances, beside the exact one)"),
    **_floor("floor", "noise floor of the case's distance"),
    **_floor("floor_sliced", "noise floor of the sliced W2² (point distances)"),
    "inside_grid_ode": Field("float64", "share of ODE samples inside the grid"),
    "inside_grid_sde": Field("float64", "share of SDE samples inside the grid"),
    "inside_grid_p0": Field("float64", "share of p0 samples inside the grid"),
    "log_fp_residual": Field("float64", "R~ (eq. 20) on fresh points of the training domain; potential models"),
    "score_fp_residual": Field("float64", "R^s (eq. 32) on fresh points of the training domain"),
    "dsm_loss": Field("float64", "L_DSM (eq. 5) of the model on one fresh batch"),
    "dsm_loss_exact": Field("float64", "L_DSM of the exact score on the same batch"),
    "dsm_excess": Field("float64", "L_DSM(model) - L_DSM(exact): an estimate of L_SM (eq. 4)"),
    "dsm_excess_se": Field("float64", "its standard error"),
    "prior_score_ratio": Field("float64", "E[s(x, T) . s_pi(x)] / E|s_pi|^2, x ~ pi: 1 matches the prior"),
    "modes_model": Field("Int64", "local maxima of the model's exp(phi) at small t (fpbench.core.modes)"),
    "modes_exact": Field("Int64", "local maxima of the exact p_t on the same grid"),
    "modes_spurious": Field("Int64", "model modes farther than the mode radius from every exact mode"),
    "modes_missing": Field("Int64", "exact modes with no model mode within the mode radius"),
    "offsupport_mass": Field("float64", "mass of the model's exp(phi) where p_t < support x its largest value"),
    "offsupport_mass_exact": Field("float64", "mass of p_t there (the oracle's)"),
    "curl_mean_t0": Field("float64", "mean |curl s| over the box at t = 0.01 (Fig. 1)"),
    "curl_max_t0": Field("float64", "max |curl s| over the box at t = 0.01"),
    "curl_mean_all_t": Field("float64", "mean |curl s| over the box x U(0, T)"),
    "curl_max_all_t": Field("float64", "max |curl s| over the box x U(0, T)"),
    "curl_field.n": Field("Int64", "Fig. 1 (b), free score models in 2D: grid nodes per axis of the stored |curl s| "
                                   "field (the record's curl_field.values)"),
    "curl_field.t": Field("float64", "Fig. 1 (b): the time of the stored |curl s| field"),
    "convergence.ratio_min_late": Field("float64", "smallest score ratio E[s.s*]/E|s*|^2 at t >= 0.05 T"),
    "convergence.ratio_max_late": Field("float64", "largest score ratio at t >= 0.05 T"),
    "convergence.rel_error": Field("float64", "relative score error E|s - s*|^2 / E|s*|^2, mean over gate times"),
    "convergence.ratio_min_late_se": Field("float64", "its standard error (delta method over the sampled points)"),
    "convergence.ratio_max_late_se": Field("float64", "its standard error"),
    "convergence.rel_error_se": Field("float64", "its standard error"),
    "convergence.rel_error_early": Field("float64", "relative score error averaged over the gate times t <= 0.05 T"),
    "convergence.rel_error_early_se": Field("float64", "its standard error"),
    "convergence.loss_plateau": Field("float64", "relative change of the median loss over the last 20% of training"),
    "exact_density": Field("boolean", "False for a samples-only target (no oracle, no convergence evidence)"),
    "disc_ode": Field("float64", "coupling bound on the ODE sampler's discretisation part of W2²"),
    "disc_sde": Field("float64", "coupling bound on the SDE sampler's discretisation part of W2²"),
    **{f"{d}_{k}": Field("float64", f"{d}: {meaning}") for d in ("disc_ode", "disc_sde", "oracle.disc_ode",
                                                                  "oracle.disc_sde")
       for k, meaning in (("median", "median of ||x - y||^2 over the coupled trajectories"),
                          ("outside", "share of coupled pairs with an end outside the grid's box"),
                          ("inside", "the bound over the pairs with both ends inside the box"))},
    "oracle.w2_ode_sde": Field("float64", "the exact score through the same samplers: W2²(p_ODE, p_SDE)"),
    "oracle.w2_ode_p0": Field("float64", "the exact score: W2²(p_ODE, p0)"),
    "oracle.w2_sde_p0": Field("float64", "the exact score: W2²(p_SDE, p0)"),
    "oracle.n": Field("Int64", "the exact score: samples per sampler"),
    "oracle.floor_mean": Field("float64", "the exact score: noise floor's mean at its n"),
    "oracle.floor_q95": Field("float64", "the exact score: noise floor's 95th percentile"),
    "oracle.disc_ode": Field("float64", "the exact score: ODE discretisation bound"),
    "oracle.disc_sde": Field("float64", "the exact score: SDE discretisation bound"),
}

def _lab_w2(name: str, what: str) -> dict[str, Field]:
    return {name: Field("float64", f"{what}: W2² estimate on the paper's grid"),
            f"{name}_sd": Field("float64", f"{what}: bootstrap sd"),
            f"{name}_low": Field("float64", f"{what}: 95% interval, low"),
            f"{name}_high": Field("float64", f"{what}: 95% interval, high")}


LAB_EXACT_BESIDE = ("w2_ode_sde", "w2_ode_p0", "w2_sde_p0", "disc_ode", "disc_sde")  # the exact score's numbers put
# beside each planted model's record when the lab is loaded, as exact_<name> (``lab.with_exact_columns``)


# One planted model of the error-injection lab (fpbench.run.lab): its record's fields (``measure``; shape and
# position only in the families that have them) and the exact score's beside it (``with_exact_columns``).
LAB_FIELDS: dict[str, Field] = {
    "target": Field("string", "the lab target's label (suites/lab.toml)"),
    "family": Field("string", "planted family: exact, gradient, solenoidal, twin or pulse"),
    "shape": Field("string", "gradient family: the bump's shape"),
    "eps": Field("float64", "the planted error's size"),
    "position": Field("float64", "pulse family: the pulse's centre t_c"),
    **_lab_w2("w2_ode_sde", "Table 1, W2²(p_ODE, p_SDE)"),
    **_lab_w2("w2_ode_p0", "Table 2, W2²(p_ODE, p0)"),
    **_lab_w2("w2_sde_p0", "Table 3, W2²(p_SDE, p0)"),
    "floor_mean": Field("float64", "the target's noise floor at n: mean"),
    "floor_sd": Field("float64", "the noise floor: sd over replicates"),
    "floor_q95": Field("float64", "the noise floor: 95th percentile"),
    "n": Field("Int64", "samples per sampler"),
    "nfe": Field("Int64", "sampler steps"),
    "disc_ode": Field("float64", "coupling bound on the ODE sampler's discretisation part of W2²"),
    "disc_sde": Field("float64", "coupling bound on the SDE sampler's discretisation part of W2²"),
    "log_fp_residual": Field("float64", "R~ (eq. 20); NaN for a model with no potential"),
    "score_fp_residual": Field("float64", "R^s (eq. 32)"),
    "score_error": Field("float64", "E|s - s*|^2, t ~ U(t0, T), x ~ p_t"),
    "exact_score_size": Field("float64", "E|s*|^2 on the same points"),
    "curl_mean": Field("float64", "mean |curl s| over the box"),
    "seconds": Field("float64", "measuring time of the model"),
    **{f"exact_{k}": Field("float64", f"the exact score's {k} on the same target, put beside each record")
       for k in LAB_EXACT_BESIDE},
}
LAB_OPTIONAL = ("shape", "position")  # only in the families that have them

# One schedule of the budget study (fpbench.run.budget, ``run_schedule``): its record's keys, and each trained
# member's. A member's numbers are the pipeline's own columns: its convergence evidence is FIELDS'
# ``convergence.<name>`` and the rest FIELDS' ``<name>`` (``budget_member_column``); a member that failed to
# train is {"failed": message}.
BUDGET_RECORD_KEYS = {
    "name": "the schedule's name (fpbench.run.budget.SCHEDULES)",
    "schedule": "its training settings: iterations, lr_stages, dsm_batch, residual_points",
    "threads": "torch threads it trained on",
    "compile": "whether its loss terms were compiled",
    "branched_from": "the schedule and step whose checkpoint it started from, or null",
    "train_seconds": "training seconds, those of the steps it shares with another schedule included",
    "member_steps_per_second": "members x steps / training seconds",
    "members": "per member label: its record (BUDGET_MEMBER_KEYS) or {failed: message}",
    "trajectories": "per member label: its score profile at every probe",
}
BUDGET_MEMBER_KEYS = ("target", "w_r", "inside_grid_ode", "inside_grid_sde", "inside_grid_p0")  # and evidence


def budget_member_column(key: str) -> str | None:
    """The results column (FIELDS) a budget member's ``key`` fills, None for one that has none (the profile's
    per-time arrays, its target and w_R, which the frame names as the pipeline does)."""
    return next((c for c in (f"convergence.{key}", key) if c in FIELDS), None)


def budget_record_problem(record) -> str | None:
    """What is wrong with a budget study record (not a mapping, a key missing or undeclared, a member without
    its keys), or None."""
    if not isinstance(record, dict):
        return "is not a JSON object"
    missing, unknown = sorted(set(BUDGET_RECORD_KEYS) - set(record)), sorted(set(record) - set(BUDGET_RECORD_KEYS))
    if missing or unknown:
        return "; ".join(([f"lacks {missing}"] if missing else []) + ([f"has undeclared {unknown}"] if unknown else []))
    for label, member in record["members"].items():
        if not isinstance(member, dict):
            return f"has member {label!r} that is not a JSON object"
        lacking = [k for k in (*BUDGET_MEMBER_KEYS, "ratio_min_late", "rel_error") if k not in member]
        if "failed" not in member and lacking:
            return f"has member {label!r} without {lacking}"
    return None


PARAM_PREFIX = "param_"  # param_<name>: the method's parameters (e.g. param_w_r), one column each


class SchemaError(FpbenchError):
    """A results column that the schema does not declare."""


def lab_record_problem(record) -> str | None:
    """What is wrong with a stored lab record (not a mapping, a field missing or undeclared), or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    measured = set(LAB_FIELDS) - {f"exact_{k}" for k in LAB_EXACT_BESIDE}
    missing = sorted(measured - set(LAB_OPTIONAL) - set(record))
    unknown = sorted(set(record) - measured)
    if missing or unknown:
        return "; ".join(([f"lacks {missing}"] if missing else []) + ([f"has undeclared {unknown}"] if unknown else []))
    return None


def typed_lab(df: pd.DataFrame) -> pd.DataFrame:
    """A lab frame with ``LAB_FIELDS``' dtypes; a SchemaError naming any undeclared column."""
    unknown = [c for c in df.columns if c not in LAB_FIELDS]
    if unknown:
        raise SchemaError(f"lab column(s) {unknown} are not declared in fpbench/run/schema.py (LAB_FIELDS)")
    return df.astype({c: LAB_FIELDS[c].dtype for c in df.columns})


def undeclared(columns) -> list[str]:
    return [c for c in columns if c not in FIELDS and not str(c).startswith(PARAM_PREFIX)]


def typed(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the declared dtypes; a SchemaError naming any undeclared column."""
    unknown = undeclared(df.columns)
    if unknown:
        raise SchemaError(f"results column(s) {unknown} are not declared in fpbench/run/schema.py (FIELDS)")
    return df.astype({c: FIELDS[c].dtype for c in df.columns if c in FIELDS})
