"""The results schema (fpbench.run.schema): every stored column declared once, typed, unknown ones refused."""

import pandas as pd
import pytest

from fpbench.cli import main
from fpbench.run.schema import FIELDS, SchemaError, typed, undeclared
from fpbench.run.store import Store

from .test_pipeline import GOOD, _write_suite


def test_every_column_a_run_stores_is_declared_and_typed(tmp_path):
    suite = _write_suite(tmp_path, GOOD)
    assert main(["run", suite, "--scale", "smoke", "--results", str(tmp_path / "r"), "--quiet"]) == 0
    df = Store(tmp_path / "r").table()  # typed(): raises on an undeclared column
    assert not undeclared(df.columns)
    assert str(df["seed"].dtype) == "Int64" and str(df["w2_ode_sde.value"].dtype) == "float64"
    assert str(df["target"].dtype) == "string"


def test_an_undeclared_column_is_refused_by_name():
    with pytest.raises(SchemaError, match=r"\['w2_new\.value'\] are not declared in fpbench/run/schema.py"):
        typed(pd.DataFrame({"seed": [0], "w2_new.value": [1.0], "param_w_r": [0.0]}))


def test_every_field_says_what_it_is():
    assert all(field.meaning and field.dtype in ("float64", "Int64", "string", "boolean") for field in FIELDS.values())


def _column_literals(folder: str) -> dict[str, set[str]]:
    """Every string literal in fpbench/<folder>/*.py that names a nested results column: a dotted
    name whose prefix is the prefix of a declared column (``w2_ode_sde.value``, ``convergence.rel_error``)."""
    import ast
    from pathlib import Path

    import fpbench

    prefixes = {name.split(".")[0] for name in FIELDS if "." in name}
    found: dict[str, set[str]] = {}
    for path in (Path(fpbench.__file__).parent / folder).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.count(".") == 1:
                prefix, field = node.value.split(".")
                if prefix in prefixes and field and node.value.replace(".", "").replace("_", "").isalnum():
                    found.setdefault(node.value, set()).add(path.name)
    return found


@pytest.mark.parametrize("folder", ["analysis", "reports", "run"])
def test_every_column_the_analysis_and_reports_name_is_declared(folder):
    """A column named by a literal where results are read must be the schema's: a misspelt or renamed
    column fails here, not as a silently empty table."""
    literals = _column_literals(folder)
    assert literals, f"no column literal found in fpbench/{folder}: the scan is broken"
    unknown = {name: sorted(files) for name, files in literals.items() if name not in FIELDS}
    assert not unknown, f"columns named in fpbench/{folder} but not declared in fpbench/run/schema.py: {unknown}"


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_writes_the_typed_table(tmp_path, suffix):
    """fpbench export: Parquet keeps the schema's dtypes exactly; CSV keeps the values."""
    suite = _write_suite(tmp_path, GOOD)
    results = str(tmp_path / "r")
    assert main(["run", suite, "--scale", "smoke", "--results", results, "--quiet"]) == 0
    out = tmp_path / f"table{suffix}"
    assert main(["export", suite, "--scale", "smoke", "--results", results, "--out", str(out)]) == 0
    df = Store(tmp_path / "r").table().sort_values("key").reset_index(drop=True)
    back = (pd.read_parquet(out) if suffix == ".parquet" else typed(pd.read_csv(out)))
    back = back.sort_values("key").reset_index(drop=True)[list(df.columns)]
    pd.testing.assert_frame_equal(back, df, check_dtype=suffix == ".parquet", check_exact=suffix == ".parquet")


def test_export_refuses_an_unknown_format_and_an_empty_store(tmp_path, capsys):
    from fpbench.run.results import export_results

    with pytest.raises(ValueError, match=r"must end in \.parquet or \.csv"):
        export_results(pd.DataFrame({"seed": [0]}), tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()
    suite = _write_suite(tmp_path, GOOD)
    assert main(["export", suite, "--scale", "smoke", "--results", str(tmp_path / "r"), "--out", "x.csv"]) == 2
    assert "no finished cases" in capsys.readouterr().err
