"""Every setting a report prints is the one used: changing any key of the train, sample and metrics tables
(``fpbench.reports.suite_report.settings_section``) changes the part of a case's record it names, or the
key is declared descriptive (``config.DESCRIPTIVE_SETTINGS``, with the reason). A new setting without an
entry here fails ``test_every_printed_setting_has_a_use_check``."""

import hashlib
import json

import numpy as np
import pytest

from fpbench.run.config import DERIVED_METRICS, DESCRIPTIVE_SETTINGS, PAPER_DEFAULTS, POINT_DEFAULTS
from fpbench.run.pipeline import run_case
from fpbench.run.store import Store
from fpbench.run.suite import Case, expand, load_suite

# A paper case (blob, w_R = 1: a potential model, so R~ is measured and trained on) made tiny.
TINY = {"train": {"iterations": 12, "dsm_batch": 64, "residual_points": 32, "log_every": 4, "checkpoint_every": 6},
        "sample": {"n": 400, "nfe": 12, "fine_steps": 4, "coarse_in_fine": 2, "chunk": 400},
        "metrics": {"n_boot": 2, "floor_reps": 2, "residual_points": 300, "dsm_points": 300, "curl_points": 40,
                    "disc_points": 20, "oracle_n": 300}}

# setting -> (a changed value, the part of the record that must change). Parts: "weights" (model.pt),
# "history" (train.json), "samples" (the samplers' points), or a metrics path (a.b for nested).
USES = {
    "train.iterations": (16, "weights"),
    "train.lr_stages": ([[1e-2, 0.5], [1e-3, 0.5]], "weights"),
    "train.dsm_batch": (48, "weights"),
    "train.time_law": ("uniform", "weights"),
    "train.t_eps": (1e-2, "weights"),
    "train.dsm_weighting": ("sigma2", "weights"),
    "train.residual_points": (24, "weights"),
    "train.residual_t0": (0.5, "weights"),
    "train.box": ([-2.0, 2.0], "weights"),
    "train.dtype": ("float64", "weights"),
    "train.log_every": (3, "history"),
    "sample.n": (300, "samples"),
    "sample.nfe": (16, "samples"),
    "sample.fine_steps": (6, "samples"),
    "sample.coarse_in_fine": (3, "samples"),
    "sample.eps": (1e-2, "samples"),
    "sample.scheme": ("heun", "samples"),
    "sample.noise_last_step": (True, "sde_samples"),
    "sample.chunk": (150, "samples"),
    "sample.dtype": ("float64", "samples"),
    "metrics.grid": ([-3.0, 3.0, 32], "w2_ode_sde.value"),
    "metrics.n_boot": (3, "w2_ode_sde.ci_high"),
    "metrics.floor_reps": (3, "floor.mean"),
    "metrics.residual_points": (200, "log_fp_residual"),
    "metrics.score_residual_points": (50, "score_fp_residual"),
    "metrics.dsm_points": (200, "dsm_loss"),
    "metrics.curl_points": (30, "curl_mean_t0"),
    "metrics.disc_points": (10, "disc_ode"),
    "metrics.oracle_n": (200, "oracle.w2_ode_sde"),
    "metrics.distance": ("points", "w2_ode_sde.value"),
}
# used only with distance = "points": changed there, against a points baseline
POINT_USES = {"metrics.point_n": (100, "w2_ode_sde.value"), "metrics.n_projections": (50, "w2_ode_sde_sliced.value")}


def test_every_printed_setting_has_a_use_check():
    printed = {f"{section}.{key}" for section in ("train", "sample", "metrics") for key in PAPER_DEFAULTS[section]}
    printed |= {f"metrics.{key}" for key in [*POINT_DEFAULTS, *DERIVED_METRICS]}
    checked = set(USES) | set(POINT_USES) | set(DESCRIPTIVE_SETTINGS)
    assert printed == checked, f"without a use check: {printed - checked}; not a setting: {checked - printed}"
    assert set(DESCRIPTIVE_SETTINGS).isdisjoint(set(USES) | set(POINT_USES))


def _tiny_case(changes: dict) -> Case:
    [case] = [c for c in expand(load_suite("paper"), "smoke", seeds=1)
              if c.config["target"]["name"] == "blob" and c.config["method"]["params"]["w_r"] == 1.0]
    config = json.loads(json.dumps(case.config))
    for section, values in TINY.items():
        config[section].update(values)
    for name, value in changes.items():
        section, key = name.split(".")
        config[section][key] = value
    return Case(config)


def _record(case: Case, store: Store) -> dict:
    metrics = run_case(case, store, log=lambda *_: None)["metrics"]
    out = store.case_dir(case.key)
    samples = store.samples(case.key)
    return {"weights": hashlib.sha256((out / "model.pt").read_bytes()).hexdigest(),
            "history": json.loads((out / "train.json").read_text())["history"],
            "samples": np.concatenate([samples["ode_points"].ravel(), samples["sde_points"].ravel()]).tolist(),
            "sde_samples": samples["sde_points"].ravel().tolist(), "metrics": metrics}


def _part(record: dict, part: str):
    if part in record and part != "metrics":
        return record[part]
    value = record["metrics"]
    for name in part.split("."):
        value = value[name]
    return value


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("settings-use"))
    return store, {"grid": _record(_tiny_case({}), store),
                   "points": _record(_tiny_case({"metrics.distance": "points"}), store)}


@pytest.mark.parametrize("name", sorted(USES) + sorted(POINT_USES))
def test_a_printed_setting_changes_what_it_names(baselines, name):
    store, base = baselines
    value, part = {**USES, **POINT_USES}[name]
    extra = {"metrics.distance": "points"} if name in POINT_USES else {}
    reference = base["points" if extra else "grid"]
    changed = _record(_tiny_case({**extra, name: value}), store)
    assert _part(changed, part) != _part(reference, part), f"{name} = {value!r} left {part} unchanged"


DESCRIPTIVE_VALUES = {"train.checkpoint_every": 5}


@pytest.mark.parametrize("name", sorted(DESCRIPTIVE_SETTINGS))
def test_a_descriptive_setting_changes_no_number(baselines, name):
    store, base = baselines
    changed = _record(_tiny_case({name: DESCRIPTIVE_VALUES[name]}), store)
    assert changed["weights"] == base["grid"]["weights"] and changed["samples"] == base["grid"]["samples"]
    keep = ("w2_ode_sde", "log_fp_residual", "dsm_loss", "disc_ode")
    assert {k: changed["metrics"][k] for k in keep} == {k: base["grid"]["metrics"][k] for k in keep}
