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


def test_the_example_model_is_measured_beside_the_baseline(tmp_path):
    """README's example through `fpbench evaluate` at smoke: its row beside the baseline's in the report."""
    code, out = _evaluate(f"{EXAMPLE}:make_model", tmp_path)
    assert code == 0
    text = out.read_text()
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
