"""The error-injection lab's runner (fpbench.run.lab), its statistics and claims (fpbench.analysis.lab_claims)."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fpbench.analysis import lab_claims as lc
from fpbench.analysis import stats as st
from fpbench.run import lab as lab_mod

REPO = Path(__file__).resolve().parents[1]

TINY = """
[lab]
sde = "ou"
targets = [{ label = "blob", name = "blob" }, { label = "gmm2", name = "gmm", params = { dim = 2 } }]
[families.gradient]
shapes = ["gauss"]
centre = [0.5, 0.5]
radius = 0.75
pulse = { centre = 1.0, width = 0.7 }
eps = [0.5]
[families.solenoidal]
eps = [1.0]
[families.pulse]
shape = "gauss"
centre = [0.5, 0.5]
radius = 0.75
width = 0.35
positions = [0.05]
eps = 0.5
late = [0.05]
early = [2.0]
[scales.tiny]
targets = ["blob"]
n = 400
nfe = 10
dtype = "float32"
floor_reps = 2
residual_points = 200
score_points = 50
disc_points = 10
n_boot = 2
"""


@pytest.fixture
def tiny_lab(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """(lab file, store root, frame) of one run of the tiny lab, shared by the tests that only read it."""
    folder = tmp_path_factory.mktemp("lab")
    (folder / "lab.toml").write_text(TINY)
    frame = lab_mod.run_lab("tiny", str(folder / "store"), log=lambda m: None, path=folder / "lab.toml")
    return folder / "lab.toml", folder / "store", frame


def _copy_store(tiny_run, tmp_path):
    import shutil

    return shutil.copytree(tiny_run[1], tmp_path / "store")


def test_lab_measures_every_model_once_and_a_rerun_reads_them(tiny_run, tmp_path, monkeypatch):
    path, _, first = tiny_run
    assert list(first["family"]) == ["exact", "gradient", "solenoidal", "twin", "pulse"]
    assert (first["target"] == "blob").all()
    exact = first[first["family"] == "exact"].iloc[0]
    assert exact["score_error"] == 0.0 and exact["log_fp_residual"] < 1e-20
    assert first["exact_w2_ode_sde"].nunique() == 1

    def refuse(*args, **kwargs):
        raise AssertionError("a stored model was measured again")

    monkeypatch.setattr(lab_mod, "measure", refuse)
    again = lab_mod.run_lab("tiny", str(_copy_store(tiny_run, tmp_path)), log=lambda m: None, path=path)
    pd.testing.assert_frame_equal(first, again)


@pytest.mark.slow  # a spawned pool: tens of seconds
def test_a_process_pool_measures_the_same_numbers(tiny_run, tmp_path):
    path, _, serial = tiny_run
    pooled = lab_mod.run_lab("tiny", str(tmp_path / "pool"), log=lambda m: None, path=path, workers=2)
    columns = [c for c in serial.columns if c != "seconds"]
    pd.testing.assert_frame_equal(pooled[columns], serial[columns])


def test_solenoidal_error_and_its_twin_have_the_same_size(tiny_run):
    df = tiny_run[2]
    sol, twin = (df[df["family"] == f].iloc[0] for f in ("solenoidal", "twin"))
    assert sol["score_error"] == pytest.approx(twin["score_error"], rel=1e-9)
    assert sol["curl_mean"] > 1e6 * twin["curl_mean"]


def test_a_damaged_lab_record_is_set_aside_and_measured_again(tiny_run, tmp_path):
    store = _copy_store(tiny_run, tmp_path)
    record = next((store / "lab" / "tiny").glob("blob-twin-*.json"))
    record.write_text(record.read_text()[:40])
    with pytest.warns(UserWarning, match=f"{record.name} is unreadable .*moved to {record.name}.corrupt"):
        again = lab_mod.run_lab("tiny", str(store), log=lambda m: None, path=tiny_run[0])
    columns = [c for c in again.columns if c != "seconds"]
    pd.testing.assert_frame_equal(again[columns], tiny_run[2][columns])  # the same numbers, measured again


@pytest.mark.parametrize("change, problem", [(lambda r: r.pop("score_error"), "lacks ['score_error']"),
                                             (lambda r: r.update(mystery=1.0), "has undeclared ['mystery']")])
def test_a_record_that_is_not_a_lab_record_is_a_clear_error_and_nothing_is_measured_over_it(
        tiny_run, tmp_path, monkeypatch, change, problem):
    """A readable record with a field missing or one the schema does not declare (another version's, an
    edit): a LabError naming the file, and the file left where it is (not measured over)."""
    store = _copy_store(tiny_run, tmp_path)
    path = next((store / "lab" / "tiny").glob("blob-twin-*.json"))
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))
    monkeypatch.setattr(lab_mod, "measure", lambda *a, **k: pytest.fail("measured over a stored record"))
    with pytest.raises(lab_mod.LabError, match=f"{path.name} {re.escape(problem)}"):
        lab_mod.run_lab("tiny", str(store), log=lambda m: None, path=tiny_run[0])
    assert json.loads(path.read_text()) == record


def test_the_lab_frame_has_the_schemas_types_and_refuses_an_undeclared_column(tiny_run):
    from fpbench.run.schema import LAB_FIELDS, SchemaError, typed_lab

    df = tiny_run[2]
    assert {c: str(df[c].dtype) for c in df.columns} == {c: LAB_FIELDS[c].dtype for c in df.columns}
    with pytest.raises(SchemaError, match="'mystery'.*LAB_FIELDS"):
        typed_lab(df.assign(mystery=1.0))


def test_unknown_lab_scale_or_key_is_a_clear_error(tiny_lab):
    with pytest.raises(lab_mod.LabError, match="unknown lab scale 'huge'; known: tiny"):
        lab_mod.load_lab("huge", tiny_lab)
    tiny_lab.write_text(TINY + "nsamples = 3\n")
    with pytest.raises(lab_mod.LabError, match=r"unknown key\(s\) \['nsamples'\] in \[scales.tiny\]"):
        lab_mod.load_lab("tiny", tiny_lab)


def test_a_malformed_missing_or_incomplete_lab_file_is_a_clear_error(tiny_lab, tmp_path):
    tiny_lab.write_text(TINY + "[[broken\n")
    with pytest.raises(lab_mod.LabError, match=f"malformed lab file {re.escape(str(tiny_lab))}"):
        lab_mod.load_lab("tiny", tiny_lab)
    with pytest.raises(lab_mod.LabError, match="cannot read lab file"):
        lab_mod.load_lab("tiny", tmp_path / "absent.toml")
    tiny_lab.write_text(TINY.replace("[families.pulse]", "[families.pulses]"))
    with pytest.raises(lab_mod.LabError, match=r"\[families\] the tables gradient, solenoidal, pulse"):
        lab_mod.load_lab("tiny", tiny_lab)
    tiny_lab.write_text("[scales.tiny]\nn = 10\n")
    with pytest.raises(lab_mod.LabError, match=r"lacks the table\(s\) \[lab\], \[families\]"):
        lab_mod.load_lab("tiny", tiny_lab)


def test_the_project_lab_file_loads_at_every_scale():
    for scale in ("smoke", "quick"):
        lab = lab_mod.load_lab(scale)
        assert lab_mod.lab_specs(lab)


# --- statistics --------------------------------------------------------------------------------------

def _power_law_data(a, rng, noise=0.03, curves=3, points=5):
    x = np.tile(np.geomspace(1e-3, 1e-1, points), curves)
    groups = np.repeat(np.arange(curves), points)
    y = (1 + groups) * x**a * np.exp(rng.normal(0, noise, len(x)))
    draws = y * np.exp(rng.normal(0, noise, (200, len(x))))
    return x, y, draws, groups


def test_power_law_exponent_recovers_a_known_exponent_and_decides_against_it():
    rng = np.random.default_rng(0)
    x, y, draws, groups = _power_law_data(0.5, rng)
    result = st.power_law_exponent(x, y, draws, groups, at_least=1.0)
    assert result.statistic == pytest.approx(0.5, abs=0.03)
    assert result.verdict == st.FAIL
    x, y, draws, groups = _power_law_data(1.4, rng)
    assert st.power_law_exponent(x, y, draws, groups, at_least=1.0).verdict == st.PASS


def test_power_law_exponent_false_pass_rate_at_the_boundary_is_at_most_alpha():
    """True a = 1 with the claim a >= 1: PASS must be rare (it needs a > 1 beyond the noise)."""
    def make(rng):
        return _power_law_data(1.0, rng, noise=0.1)

    cal = st.calibrate(lambda x, y, d, g: st.power_law_exponent(x, y, d, g, at_least=1.0), make, reps=60)
    assert cal[st.PASS] <= 0.1


def test_constant_spread_tells_a_stable_constant_from_a_drifting_one():
    rng = np.random.default_rng(1)
    x = np.geomspace(1e-4, 1e-1, 6)
    stable = 3.0 * x**0.5
    draws = stable * np.exp(rng.normal(0, 0.02, (300, 6)))
    assert st.constant_spread(x, stable, draws, 0.5, 10.0).verdict == st.PASS
    assert st.constant_spread(x, stable, draws, 1.0, 10.0).verdict == st.FAIL  # C = 3 x^-1/2: spread 31


def test_crossover_is_where_the_sde_stops_being_hurt_more():
    df = pd.DataFrame({"family": "pulse", "target": "t", "position": [0.01, 0.1, 1.0, 10.0],
                       "w2_ode_p0": [1.0, 1.0, 4.0, 8.0], "w2_sde_p0": [4.0, 2.0, 2.0, 1.0],
                       "exact_w2_ode_p0": 0.0, "exact_w2_sde_p0": 0.0})
    # log(SDE / ODE): log 4, log 2, -log 2, -log 8: the sign changes half way between 0.1 and 1 in log t
    assert lc.crossovers(df)["t"] == pytest.approx(10**-0.5)


# ----- the lab's claims on data built to satisfy or violate them -----------------------------------------

def _gradient_frame(exponent: float, residual: str = "log_fp_residual", seed: int = 0):
    """Planted gradient errors on 3 targets x 2 shapes x 5 eps whose gap above the exact score's is
    W2 = 0.5 x^exponent, x the named residual (R~ or R^s) = eps^2 / 10 with a little noise."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for target in ("blob", "gmm2", "checker"):
        rows.append({"family": "exact", "target": target, "shape": "", "eps": 0.0, "w2_ode_sde": 1e-6,
                     "w2_ode_sde_sd": 1e-8, "exact_w2_ode_sde": 1e-6, "log_fp_residual": 0.0, "score_fp_residual": 0.0})
        for shape in ("gauss", "wave"):
            for eps in (0.0625, 0.125, 0.25, 0.5, 1.0):
                x = eps**2 / 10 * np.exp(rng.normal(0, 0.02))
                gap = 1e-6 + (0.5 * x**exponent) ** 2
                other = "score_fp_residual" if residual == "log_fp_residual" else "log_fp_residual"
                rows.append({"family": "gradient", "target": target, "shape": shape, "eps": eps, "w2_ode_sde": gap,
                             "w2_ode_sde_sd": 0.01 * gap, "exact_w2_ode_sde": 1e-6, residual: x,
                             other: x * np.exp(rng.normal(0, 2.0))})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("key, residual", [("L1", "log_fp_residual"), ("L4-suff", "score_fp_residual")])
def test_the_rate_claims_pass_a_fast_rate_and_not_one_below_the_bounds(key, residual):
    from fpbench.analysis import lab_claims as lc

    def decide(exponent):
        frame = _gradient_frame(exponent, residual)
        outcome = lc.claim_l1(frame)[0] if key == "L1" else lc.claim_l4_sufficiency(frame)
        return outcome.verdict

    assert decide(1.5) == "PASS"
    assert decide(0.8) == "FAIL"  # the violating data: W2 falls slower than the residual


def _pulse_frame(late_hurts_sde: bool):
    import pandas as pd

    rows = []
    for target in ("blob", "gmm2", "checker"):
        rows.append({"family": "exact", "target": target, "position": float("nan")})
        for position in (0.02, 0.05, 0.1, 1.0, 2.0, 4.0):
            late = position < 0.5
            big, small = 0.02, 0.005
            sde, ode = (big, small) if late == late_hurts_sde else (small, big)
            rows.append({"family": "pulse", "target": target, "position": position, "w2_ode_p0": 0.01 + ode,
                         "exact_w2_ode_p0": 0.01, "w2_sde_p0": 0.01 + sde, "exact_w2_sde_p0": 0.01})
    return pd.DataFrame(rows)


def test_l3_can_pass_with_nine_pairs_per_part_and_fails_when_reversed():
    from fpbench.analysis import lab_claims as lc

    late, early = [0.02, 0.05, 0.1], [1.0, 2.0, 4.0]
    passed = lc.claim_l3(_pulse_frame(True), late, early)
    assert passed.verdict == "PASS" and "the smallest attainable p is 0.002" in passed.measured
    assert lc.claim_l3(_pulse_frame(False), late, early).verdict == "FAIL"


def _necessity_frame(gap_models_have_larger_rs: bool):
    """Gradient twins with a clear gap (50 sd above floor + discretisation) and solenoidal models with
    none; R^s of the twins above (or, violating L4, below) every solenoidal model's."""
    import pandas as pd

    rows = []
    for target in ("blob", "gmm2", "checker"):
        for j in range(3):
            big, small = 10.0 ** (1 + 0.1 * j), 10.0 ** (-2 - 0.1 * j)
            common = {"target": target, "floor_mean": 1e-3, "floor_sd": 1e-4, "w2_ode_sde_sd": 1e-4,
                      "disc_ode": 1e-6, "disc_sde": 1e-6, "exact_w2_ode_sde": 1e-3, "eps": 1.0, "shape": "",
                      "log_fp_residual": 1.0}
            rows.append({**common, "family": "twin", "w2_ode_sde": 1e-3 + 4e-6 + 50e-4,
                         "score_fp_residual": big if gap_models_have_larger_rs else small})
            rows.append({**common, "family": "solenoidal", "w2_ode_sde": 1e-3,
                         "score_fp_residual": small if gap_models_have_larger_rs else big})
    return pd.DataFrame(rows)


def test_l4_necessity_passes_separated_residuals_and_fails_reversed_ones():
    from fpbench.analysis import lab_claims as lc

    assert lc.claim_l4(_necessity_frame(True))[0].verdict == "PASS"
    assert lc.claim_l4(_necessity_frame(False))[0].verdict == "FAIL"


def _solenoidal_frame(solenoidal_moves: bool):
    """Solenoidal errors (3 sizes on 3 targets) whose score error, curl and R^s grow with eps, and their
    gradient twins, which move every W2^2 far above floor + discretisation; the solenoidal models' W2^2 stay at
    the allowance (L2) or, violating it, move like their twins."""
    import pandas as pd

    rows = []
    for target in ("blob", "gmm2", "checker"):
        for k, eps in enumerate((0.5, 1.0, 2.0)):
            base = {"target": target, "eps": eps, "floor_mean": 1e-3, "floor_sd": 1e-4, "disc_ode": 1e-6,
                    "disc_sde": 1e-6, "score_error": 0.1 * (k + 1), "curl_mean": 0.2 * (k + 1),
                    "score_fp_residual": 0.3 * (k + 1)}
            moved = {d: 0.05 * (k + 1) for d in ("w2_ode_sde", "w2_ode_p0", "w2_sde_p0")}
            still = {"w2_ode_sde": 1e-3 + 4e-6, "w2_ode_p0": 1e-3 + 1e-6, "w2_sde_p0": 1e-3 + 1e-6}
            sds = {f"{d}_sd": 1e-4 for d in ("w2_ode_sde", "w2_ode_p0", "w2_sde_p0")}
            rows.append({**base, **sds, "family": "twin", **moved})
            rows.append({**base, **sds, "family": "solenoidal", **(moved if solenoidal_moves else still)})
    return pd.DataFrame(rows)


def test_l2_passes_still_solenoidal_errors_and_fails_ones_that_move():
    from fpbench.analysis import lab_claims as lc

    assert lc.claim_l2(_solenoidal_frame(False)).verdict == "PASS"
    assert lc.claim_l2(_solenoidal_frame(True)).verdict == "FAIL"


def test_the_committed_lab_records_render_the_committed_report_without_measuring(tmp_path, monkeypatch):
    """reports/lab.md's verdicts come from reports/lab-records: rendering them measures nothing (the
    measuring function made to raise) and gives the committed summary."""
    from fpbench.cli import main
    from fpbench.run import lab

    def measuring(*args, **kwargs):
        raise AssertionError("the committed records must be read, not measured again")

    monkeypatch.setattr(lab, "_measure_and_store", measuring)
    records = tmp_path / "lab-records"
    shutil.copytree(REPO / "reports" / "lab-records", records)  # the lock files of a run land in the copy
    out = tmp_path / "lab.md"
    assert main(["lab", "--scale", "quick", "--results", str(records), "--out", str(out), "--quiet",
                 "--calibration-reps", "3"]) == 0
    summary = lambda text: text[text.index("## Summary"):text.index("## Calibration")]  # noqa: E731
    assert summary(out.read_text()) == summary((REPO / "reports" / "lab.md").read_text())


def test_the_lab_calibration_rejects_violating_frames_and_finds_planted_ones(monkeypatch):
    """On frames built from the committed lab run: null and violating truths (a = 0.5, a spread of 30, a harm
    ratio half the needed size, solenoidal errors moving like their twins, R^s overlapping) never PASS and
    planted ones do; a test made to always PASS shows up at once."""
    from fpbench.run.lab import load_lab, run_lab

    df = run_lab("quick", str(REPO / "reports" / "lab-records"), log=lambda *a: None)
    pulse = load_lab("quick")["families"]["pulse"]
    cal = lc.lab_calibration(df, pulse["late"], pulse["early"], reps=3).set_index("claim")
    assert set(cal.index) == set(lc.LAB_CLAIMS) and (cal["reps"] == 3).all()
    assert (cal["PASS rate on violating data"] == 0).all() and (cal["rate under null"] == 0).all()
    for key in ("L1", "L1-lin", "L1-sqrt", "L4", "L4-suff"):
        assert cal.loc[key, "power"] == 1, key
    always = st.ClaimTest("always", 1.0, 0.0, 1.0, 1.0, "x", 1.0, 1.0, 3, 0.05, 0.0, st.PASS)
    monkeypatch.setattr(lc, "claim_l4_sufficiency", lambda d, seed=0: lc.ClaimOutcome(lc.LAB_CLAIMS["L4-suff"], always))
    broken = lc.lab_calibration(df, pulse["late"], pulse["early"], reps=3).set_index("claim")
    assert broken.loc["L4-suff", "PASS rate on violating data"] == 1
