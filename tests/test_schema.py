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
