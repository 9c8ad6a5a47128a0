"""The results of a suite as a table: one row per finished case, its labels, method parameters and
scalar metrics (``store.flatten_metrics``: nested metrics as ``name.field``, e.g. ``w2_ode_sde.value``),
typed by the results schema (``fpbench.run.schema``: every column's dtype and meaning).

    import fpbench
    df = fpbench.load_results("paper", "quick")          # pandas.DataFrame
"""

from __future__ import annotations

import pandas as pd

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
