"""The results of a suite as a table: one row per finished case, its labels, method parameters and
scalar metrics (``store.flatten_metrics``: nested metrics as ``name.field``, e.g. ``w2_ode_sde.value``),
typed by the results schema (``fpbench.run.schema``: every column's dtype and meaning).

    import fpbench
    df = fpbench.load_results("paper", "quick")          # pandas.DataFrame

``export_results`` writes that table to Parquet (the schema's dtypes kept; needs pyarrow:
``pip install "fpbench[parquet]"``) or CSV, for analysis outside fpbench. The per-case JSON records
stay the store's own format: each is written once, atomically, when its case finishes, so a killed
run loses nothing and a rerun resumes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.errors import FpbenchError
from .schema import typed
from .store import Store, flatten_metrics, results_root
from .suite import Case, expand, load_suite


def collect(store: Store, cases: list[Case]) -> tuple[pd.DataFrame, list[dict], list[str]]:
    """(one row per finished case, their raw records, labels of cases not finished, with the reason
    for those that failed)."""
    rows, records, missing = [], [], []
    for case in cases:
        if store.is_done(case.key):
            rec = store.metrics(case.key)
            records.append(rec)
            rows.append(flatten_metrics(rec))
        else:
            failure = store.failure(case.key)
            missing.append(case.label + (f" (failed: {failure['message']})" if failure else ""))
    return typed(pd.DataFrame(rows)), records, missing


def load_results(suite: str, scale: str, results: str | None = None, seeds: int | None = None) -> pd.DataFrame:
    """The finished cases of ``suite`` at ``scale`` in the store at ``results`` (default
    $FPBENCH_RESULTS or ./results), one row each. Cases not run yet are absent; the frame's
    ``attrs["missing"]`` lists them (with the reason for failed ones)."""
    df, _records, missing = collect(Store(results_root(results)), expand(load_suite(suite), scale, seeds))
    df.attrs["missing"] = missing
    return df


def load_model(key: str, results: str | None = None, device=None) -> tuple:
    """A finished case's trained model, from the store at ``results`` (default $FPBENCH_RESULTS or ./results)
    by its key or a prefix of it (the ``key`` column of ``load_results``): ``(model, target, sde, case)``, the
    model with the weights the case was evaluated with, ready for a metric fpbench does not compute."""
    from .store import read_json
    from .suite import build

    folder = Store(results_root(results)).find(key)
    weights = folder / "model.pt"
    if not weights.exists():
        raise FpbenchError(f"case {folder.name} has no trained weights in {folder.parent} (not trained yet, or a "
                           "model trained elsewhere, such as the authors' checkpoints)")
    case = Case(read_json(folder / "config.json"))
    target, sde, model, _method = build(case, device)
    import torch

    model.load_state_dict(torch.load(weights, weights_only=True, map_location=device or "cpu"))
    return model.eval(), target, sde, case


EXPORT_FORMATS = (".parquet", ".csv")


def export_results(df: pd.DataFrame, out) -> Path:
    """``df`` (a ``load_results`` frame) written to ``out``, by its suffix: ``.parquet`` (typed; pyarrow)
    or ``.csv``. Written to a temporary name and renamed, so an interrupted export leaves no half file."""
    out = Path(out)
    if out.suffix not in EXPORT_FORMATS:
        raise FpbenchError(f"export to {out.name!r}: the file must end in {' or '.join(EXPORT_FORMATS)}")
    if out.suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise FpbenchError('Parquet needs pyarrow: pip install "fpbench[parquet]" (or export to .csv)') from None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    frame = df.copy()
    frame.attrs = {}  # attrs (the missing cases) are not part of the table
    if out.suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_csv(tmp, index=False)
    tmp.replace(out)
    return out
