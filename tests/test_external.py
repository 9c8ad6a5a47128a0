"""Bring your own model (fpbench.run.external, fpbench evaluate): the protocol, its errors, the report."""

from pathlib import Path

import pytest
import torch

from fpbench.cli import main
from fpbench.run import external as ext
from fpbench.run.store import Store

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = str(REPO / "examples" / "external_model.py")


def _evaluate(model, tmp_path, *extra):
    out = tmp_path / "report.md"
    code = main(["evaluate", model, "--target", "blob", "--scale", "smoke", "--results", str(tmp_path / "store"),
                 "--out", str(out), "--quiet", *extra])
    return code, out


def test_the_example_model_is_measured_beside_the_baseline(tmp_path, capsys):
    """README's example through `fpbench evaluate` at smoke: its row beside the baseline's in the report,
    and the answer first, in the report and on the terminal."""
    code, out = _evaluate(f"{EXAMPLE}:make_model", tmp_path)
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "Your model against the baseline:" and printed[-1].startswith("wrote ")
    assert any(line.startswith("- On **blob**, yours against the baseline: cannot tell: ") for line in printed)
    text = out.read_text()
    assert text.index("## Your model against the baseline") < text.index("## Every model")
    assert text.count("| baseline ") == 1 and text.count("| yours ") == 1
    assert "Paired tests need matched seeds: 1 here" in text
    # the library's face reads the same store: no case is run again, the records are the ones stored
    import fpbench

    store = Store(tmp_path / "store")
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "store").glob("*/metrics.json")}
    [(baseline, yours)] = fpbench.evaluate(f"{EXAMPLE}:make_model", "blob", "smoke", results=str(tmp_path / "store"),
                                           log=lambda *_: None)
    assert baseline == store.metrics(baseline["key"]) and yours == store.metrics(yours["key"])
    assert yours["config"]["model"]["kind"] == "external" and baseline["config"]["method"]["params"]["w_r"] == 0.0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


@pytest.mark.slow  # trains the baseline and samples two models: tens of seconds
def test_a_factory_and_its_torchscript_file_are_measured_alike(tmp_path):
    assert _evaluate(f"{EXAMPLE}:make_model", tmp_path)[0] == 0
    scripted = tmp_path / "model.pt"
    import importlib.util

    spec = importlib.util.spec_from_file_location("example_external", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.jit.script(module.make_model()).save(str(scripted))
    assert _evaluate(str(scripted), tmp_path)[0] == 0
    store = Store(tmp_path / "store")
    rows = store.table()
    external = rows[rows["model"] == "external"].sort_values("key")
    assert len(external) == 2  # two specs, two cases; the baseline trained once
    for column in ("w2_ode_sde.value", "w2_sde_p0.value", "log_fp_residual", "score_fp_residual"):
        a, b = external[column].to_numpy()
        assert a == pytest.approx(b, rel=1e-4, abs=1e-9), column
    assert external["log_fp_residual"].notna().all()  # the example has a potential: R~ is measured


class NoScore:
    pass


class WrongShape:
    def score(self, x, t):
        return x[:, 0]


def no_score():
    return NoScore()


def wrong_shape():
    return WrongShape()


@pytest.mark.parametrize("spec, message", [
    ("tests/test_external.py:no_score", "the object has no score\\(x, t\\) method"),
    ("tests/test_external.py:wrong_shape", "score\\(x, t\\) must return shape \\(n, 2\\)"),
    ("tests/test_external.py:missing", "has no 'missing'"),
    ("no_such_module_xyz:f", "cannot load model 'no_such_module_xyz:f': No module named"),
    ("model.onnx", "expected module:factory, file.py:factory or a TorchScript file"),
    ("absent.pt", "no TorchScript file absent.pt"),
])
def test_a_model_off_the_protocol_is_one_clear_error(spec, message, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(ext.ExternalModelError, match=message):
        model = ext.ExternalModel(ext.load_external(spec), 2)
        ext.check_protocol(model, spec)


def test_a_factory_that_raises_is_one_line_naming_it(tmp_path, capsys):
    from fpbench.cli import main

    raiser = tmp_path / "raiser.py"
    raiser.write_text("def make(seed=0):\n    raise RuntimeError('my factory broke')\n")
    assert main(["evaluate", f"{raiser}:make", "--target", "blob", "--scale", "smoke", "--results",
                 str(tmp_path / "r"), "--out", str(tmp_path / "e.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the factory raised RuntimeError: my factory broke" in err


def _answer_frame(ratio: float, seeds: int = 4):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for seed in range(seeds):
        base = {f"{k}.value": v for k, v in zip(("w2_ode_sde", "w2_ode_p0", "w2_sde_p0"), rng.uniform(0.01, 0.02, 3))}
        rows.append({"who": "baseline", "target": "blob", "seed": seed, **base})
        rows.append({"who": "yours", "target": "blob", "seed": seed, **{k: v * ratio for k, v in base.items()}})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("ratio, seeds, gate, expected", [(0.5, 6, None, "**better**"), (2.0, 6, None, "**worse**"),
                                                          (1.0, 6, None, "not distinguishable"),
                                                          (0.5, 6, "1 of 8 models fail", "cannot tell: 1 of 8"),
                                                          (0.5, 1, None, "cannot tell: no paired test")])
def test_the_answer_of_evaluate_follows_the_paired_test_and_the_gate(monkeypatch, ratio, seeds, gate, expected):
    """One sentence per target; better only where yours is lower on matched seeds and both models converged."""
    from fpbench.analysis import compare as cmp
    from fpbench.reports.external_report import answer_lines

    monkeypatch.setattr(cmp, "gate_failures", lambda *a: gate)
    [sentence] = [line for line in answer_lines(_answer_frame(ratio, seeds)) if line.startswith("- On **blob**")]
    assert sentence.count(expected) == (1 if expected.startswith("cannot tell") else 3), sentence  # one reason once
