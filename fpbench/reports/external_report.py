"""The comparison report of ``fpbench evaluate``: a user's model (``fpbench.run.external``) beside the
built-in baseline of the same target, seed by seed, every number from the two cases' stored records;
with matched seeds, paired tests of the three W2^2 (``fpbench.analysis.stats.paired_comparison``)."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis import claims as cl
from ..analysis import compare as cmp
from ..analysis import stats as st
from ..run.store import flatten_metrics

W2 = (("w2_ode_sde", "W2²(ODE, SDE)"), ("w2_ode_p0", "W2²(ODE, p0)"), ("w2_sde_p0", "W2²(SDE, p0)"))


ANSWER = "Your model against the baseline"


def frame(pairs: list[tuple[dict, dict]]) -> pd.DataFrame:
    """One row per model and seed: 'baseline' or 'yours', from (baseline record, external record) pairs."""
    rows = []
    for base, ext in pairs:
        for who, rec in (("baseline", base), ("yours", ext)):
            row = flatten_metrics(rec)
            row["who"], row["label"] = who, row.get("label", rec["config"]["model"].get("spec", ""))
            row["target"] = rec["config"]["target"]["name"]
            rows.append(row)
    return pd.DataFrame(rows)


def answer_lines(df: pd.DataFrame) -> list[str]:
    """Is your model better than the baseline? One sentence per target: each of the three W2^2 of Tables
    1-3 better, worse or not distinguishable (``compare.user_verdicts``: the paired test over matched
    seeds), or why it cannot tell (the convergence gate, too few seeds)."""
    verdicts = cmp.user_verdicts(df.assign(label=df["who"]), ["yours"], "baseline")
    alpha = cl.CLAIM_SETTINGS[cl.ALPHA]
    lines = [f"## {ANSWER}", "",
             f"The paired sign-flip test over matched seeds of log(baseline / yours) at α = {alpha} "
             "(the ratio is yours over the baseline's W2², lower is better), decided only when both models pass "
             "the convergence gate.", ""]
    for target in dict.fromkeys(v.target for v in verdicts):
        mine = [v for v in verdicts if v.target == target]
        if len({v.words for v in mine}) == 1 and mine[0].words.startswith("cannot tell"):  # one reason for all
            lines.append(f"- On **{target}**, yours against the baseline: {mine[0].words}.")
            continue
        lines.append(f"- On **{target}**, yours against the baseline: "
                     + "; ".join(f"{v.table} {v.words}" for v in mine) + ".")
    return lines + [""]


def _cell(row, name: str) -> str:
    value, low, high = (row.get(f"{name}.{k}", np.nan) for k in ("value", "ci_low", "ci_high"))
    return f"{value:.4g} [{low:.3g}, {high:.3g}]" if np.isfinite(value) else "no samples inside the grid"


def _num(value, fmt: str = "{:.3g}") -> str:
    return fmt.format(value) if value is not None and np.isfinite(value) else "not measured (no potential)"


def metrics_table(df: pd.DataFrame) -> pd.DataFrame:
    checks = cl.convergence_checks(df, weight_of=lambda row: 0.0)  # an outside model: against the authors' DSM
    rows = []
    for (_, row), (_, check) in zip(df.iterrows(), checks.iterrows()):
        rows.append({"model": row["who"], "seed": row["seed"],
                     **{label: _cell(row, name) for name, label in W2},
                     "floor": f"{row.get('floor.mean', np.nan):.3g}",
                     "R̃ (eq. 20)": _num(row.get("log_fp_residual")),
                     "R^s (eq. 32)": _num(row.get("score_fp_residual")),
                     "L_DSM excess": f"{row['dsm_excess']:.3g} ± {1.96 * row['dsm_excess_se']:.2g}",
                     "mean |curl| (t = 0.01)": f"{row['curl_mean_t0']:.3g}",
                     "score ratio (late)": (f"{row['convergence.ratio_min_late']:.3f}–"
                                            f"{row['convergence.ratio_max_late']:.3f}"),
                     "relative score error": f"{row['convergence.rel_error']:.3g}",
                     "convergence gate": "pass" if not check["fails"] else "; ".join(check["fails"])})
    return pd.DataFrame(rows)


def paired_section(df: pd.DataFrame) -> list[str]:
    base = df[df["who"] == "baseline"].set_index("seed")
    yours = df[df["who"] == "yours"].set_index("seed")
    seeds = sorted(set(base.index) & set(yours.index))
    if len(seeds) < 2:
        return [f"Paired tests need matched seeds: {len(seeds)} here (`--seeds K` evaluates K; a factory that takes "
                "`seed` builds one model per seed).", ""]
    rows = []
    for name, label in W2:
        result = st.paired_comparison(yours.loc[seeds, f"{name}.value"], base.loc[seeds, f"{name}.value"],
                                      **cl.test_settings(cl.PAIRED_MIN_EFFECT))
        rows.append({"quantity": label, "claim": "yours below the baseline", "mean log(baseline / yours)":
                     f"{result.effect:.3g} [{result.ci_low:.3g}, {result.ci_high:.3g}]", "p": f"{result.pvalue:.3g}",
                     "p (other way)": f"{result.pvalue_opposite:.3g}", "verdict": result.verdict})
    return [f"Paired sign-flip tests over {len(seeds)} matched seeds (fpbench/analysis/stats.py):", "",
            pd.DataFrame(rows).to_markdown(index=False), ""]


def write_report(pairs: list[tuple[dict, dict]], spec: str, out: Path, command: str) -> Path:
    df = frame(pairs)
    oracle = pairs[0][0]["metrics"]["oracle"]
    cfg = pairs[0][1]["config"]
    lines = [f"# Your model beside the baseline: `{spec}`", "",
             f"Regenerate with `{command}`. Generated {datetime.date.today().isoformat()}. Target "
             f"`{cfg['target']['name']}`, suite `{cfg['suite']}` at scale `{cfg['scale']}`: your model is sampled and "
             "measured with the baseline case's settings (n = "
             f"{cfg['sample']['n']:,} per sampler, nfe = {cfg['sample']['nfe']}); the baseline is the suite's "
             "w_R = 0 model, trained by fpbench. W2² with 95% bootstrap intervals; the floor is the estimator "
             "between two independent p0 samples of the same size.", "",
             *answer_lines(df),
             "## Every model", "",
             metrics_table(df).to_markdown(index=False), "",
             *paired_section(df),
             "The exact score through the same samplers (what no model can beat at this n and nfe): "
             f"W2²(ODE, SDE) {oracle['w2_ode_sde']:.3g}, W2²(ODE, p0) {oracle['w2_ode_p0']:.3g}, "
             f"W2²(SDE, p0) {oracle['w2_sde_p0']:.3g} at n = {oracle['n']:,}; discretisation bounds ODE "
             f"{oracle['disc_ode']:.3g}, SDE {oracle['disc_sde']:.3g}.", "",
             "The convergence gate is the paper suite's (fpbench/analysis/claims.py), read against the authors' "
             "w_R = 0 model of the same target.", ""]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return out
