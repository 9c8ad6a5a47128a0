"""Reports: markdown tables that put fpbench's measured values beside the paper's, with intervals
and noise floors, plus seaborn figures. Every number comes from the results store."""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .. import __version__
from ..analysis.paper_intervals import STORE_DIR, paper_sds
from ..analysis.paper_values import TABLE_TITLES, paper_value
from ..analysis.paper_values import TARGETS as PAPER_TARGETS
from ..analysis.stats import summarise
from ..core.errors import FpbenchError
from ..run.config import DERIVED_METRICS, PAPER_DEFAULTS, TEXT_VS_CODE, score_residual_points
from ..run.results import collect
from ..run.store import Store
from ..run.suite import Case, expand, load_suite

TABLES = ("w2_ode_sde", "w2_ode_p0", "w2_sde_p0")


def _target_order(names) -> list[str]:
    paper_order = ["blob", "circles2", "checker"]  # the paper's column order
    return sorted(names, key=lambda n: (paper_order.index(n) if n in paper_order else 99, n))


def _cell(mean: float, low: float, high: float) -> str:
    if not math.isfinite(mean):
        return "n/a (no samples in the grid)"
    return f"{mean:.6f} [{low:.6f}, {high:.6f}]"


def sweep_column(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """(df, the column of the swept method parameter): ``param_w_r`` for the paper's suites; several
    swept parameters are joined into one label column, none gives a constant one."""
    params = [c for c in df.columns if c.startswith("param_")]
    if len(params) == 1:
        return df, params[0]
    label = df[params].astype(str).agg(",".join, axis=1) if params else "—"
    return df.assign(param_sweep=label), "param_sweep"


def table_frame(df: pd.DataFrame, table: str, param: str = "param_w_r") -> pd.DataFrame:
    """Rows: the method parameter; columns: per target, ours (mean [CI]), floor, and the paper's
    value when the parameter is the paper's w_R."""
    out = {}
    for (w, target), grp in df.groupby([param, "target"], sort=True):
        mean, low, high, _ = summarise(grp[f"{table}.value"].to_numpy(), grp[f"{table}.ci_low"].to_numpy(),
                                       grp[f"{table}.ci_high"].to_numpy())
        paper = paper_value(table, target, w) if param == "param_w_r" else None
        out.setdefault(w, {})[(target, "fpbench")] = _cell(mean, low, high)
        out[w][(target, "floor")] = f"{grp['floor.mean'].mean():.6f}"
        out[w][(target, "paper")] = "—" if paper is None else f"{paper:.6f}"
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame.index.name = "w_R" if param == "param_w_r" else param.removeprefix("param_")
    columns = [(t, c) for t in _target_order({t for t, _ in frame.columns}) for c in ("fpbench", "floor", "paper")]
    return frame[columns]


def table_markdown(frame: pd.DataFrame) -> str:
    """A table_frame (columns (target, what)) as markdown, its column names joined."""
    flat = frame.copy()
    flat.columns = [f"{t} {c}" for t, c in flat.columns]
    return flat.to_markdown()


def diagnostics_frame(df: pd.DataFrame, param: str = "param_w_r") -> pd.DataFrame:
    cols = {"log_fp_residual": "R~ (eq. 20)", "score_fp_residual": "R^s (eq. 32)", "dsm_loss": "L_DSM",
            "dsm_excess": "L_DSM - L_DSM(exact)", "curl_mean_t0": "mean |curl| t=0.01",
            "prior_score_ratio": "score at T / prior's", "disc_ode": "disc. ODE (bound)",
            "disc_ode_inside": "disc. ODE (pairs inside the box)", "disc_ode_outside": "ODE pairs leaving the box",
            "disc_sde": "disc. SDE (bound)", "disc_sde_inside": "disc. SDE (pairs inside the box)",
            "disc_sde_outside": "SDE pairs leaving the box",
            "inside_grid_ode": "ODE in grid", "inside_grid_sde": "SDE in grid"}
    keep = ["target", param, "seed"] + [c for c in cols if c in df]
    return df[keep].rename(columns=cols).sort_values(["target", param, "seed"]).set_index(["target", param, "seed"])


def paper_comparable(df: pd.DataFrame) -> pd.DataFrame:
    """The rows in the paper's own setting (its targets, the OU process, a potential model trained by the
    paper's loss, eq. 20), whatever the suite is called: the only rows whose numbers the paper's tables
    speak about."""
    keep = df["target"].isin(PAPER_TARGETS) & (df["sde"] == "ou") & (df["method"] == "fp")
    if "model" in df:
        keep &= df["model"] == "potential"
    return df[keep]


def distance_frame(df: pd.DataFrame, sds: dict) -> pd.DataFrame:
    """Per cell of Tables 1-3: fpbench's mean [95% interval], the paper's value, their ratio, whether the
    interval holds the paper's value, and the distance in the paper's own 95% half-widths (1.96 x the sd of
    its estimate, where ``sds`` has it)."""
    rows = []
    for table in TABLES:
        for (target, w_r), grp in df.groupby(["target", "param_w_r"]):
            paper = paper_value(table, target, w_r)
            if paper is None:
                continue
            mean, low, high, _kind = summarise(grp[f"{table}.value"].to_numpy(float),
                                               grp[f"{table}.ci_low"].to_numpy(float),
                                               grp[f"{table}.ci_high"].to_numpy(float))
            sd = sds.get((table, target, float(w_r)))
            rows.append({"table": TABLE_TITLES[table].split(":")[0], "target": target, "w_R": w_r,
                         "fpbench [95%]": f"{mean:.6f} [{low:.6f}, {high:.6f}]", "paper": paper,
                         "ratio": mean / paper, "interval holds the paper's": bool(low <= paper <= high),
                         "distance (paper's half-widths)": (mean - paper) / (1.96 * sd) if sd else math.nan})
    return pd.DataFrame(rows)


def distance_section(df: pd.DataFrame, sds: dict) -> str:
    """How far fpbench's cells are from the paper's: ratios, interval coverage and, where ``sds`` holds the
    paper's own spread of a cell, the distance in its half-widths."""
    frame = distance_frame(df, sds)
    if frame.empty:
        return ""
    held = int(frame["interval holds the paper's"].sum())
    half = frame["distance (paper's half-widths)"].dropna()
    lines = ["## Distance to the paper", "",
             f"Median ratio to the paper's cell {frame['ratio'].median():.2f} (from {frame['ratio'].min():.2f} to "
             f"{frame['ratio'].max():.2f}); the paper's value lies inside fpbench's 95% interval in {held} of "
             f"{len(frame)} cells. " + (
                 f"In the paper's own 95% half-widths (1.96 x the sd of its estimate at its n, "
                 f"`fpbench reference spreads`; reports/paper-intervals.md), the median distance is "
                 f"{half.abs().median():.1f} in {len(half)} cells." if len(half) else
                 "The paper's own spreads are not known for these cells."), "",
             frame.to_markdown(index=False, floatfmt=".3g"), ""]
    return "\n".join(lines)


def trends_section(df: pd.DataFrame) -> str:
    """Does each quantity move with w_R the way the paper's table does? Spearman's rho over the w_R
    values (means over seeds), ours beside the paper's: descriptive, with four points per row."""
    rows = []
    for table in TABLES:
        for target in _target_order(df["target"].unique()):
            grp = df[df["target"] == target].groupby("param_w_r")[f"{table}.value"].mean()
            paper = [paper_value(table, target, w) for w in grp.index]
            if len(grp) < 3 or any(p is None for p in paper):
                continue
            rho_ours = stats.spearmanr(grp.index, grp.to_numpy()).statistic
            rho_paper = stats.spearmanr(grp.index, paper).statistic
            same = "yes" if np.sign(rho_ours) == np.sign(rho_paper) else "no"
            rows.append((TABLE_TITLES[table].split(":")[0], target, f"{rho_ours:+.2f}", f"{rho_paper:+.2f}", same))
    if not rows:
        return ""
    table = pd.DataFrame(rows, columns=["table", "target", "rho(w_R, fpbench)", "rho(w_R, paper)", "same direction"])
    agree = sum(r[-1] == "yes" for r in rows)
    return "\n".join(["## Trends in w_R against the paper's", "",
                      f"{agree} of {len(rows)} rows move with w_R in the paper's direction (Spearman's rho over the "
                      "w_R values; four points per row, so descriptive, not a test).", "",
                      table.to_markdown(index=False), ""])


def dropped_samples_section(df: pd.DataFrame, threshold: float = 0.95) -> str:
    """The grid W2^2 drops samples outside the box: say where that hides part of the distance."""
    cols = [c for c in ("inside_grid_ode", "inside_grid_sde") if c in df]
    low = df[(df[cols] < threshold).any(axis=1)] if cols else df.iloc[0:0]
    if low.empty:
        return ""
    worst = low[cols].min(axis=1).min()
    return (f"**Samples outside the grid.** {len(low)} of {len(df)} cases keep less than {threshold:.0%} of their "
            f"ODE or SDE samples inside the grid's box (the least: {worst:.1%}). The paper's grid W2² drops the rest, "
            "so those cells measure only the part of the distribution that stayed inside. See the columns "
            "`ODE in grid`, `SDE in grid` and `score at T / prior's` below (0 for the trivial log-FP solution "
            "u = c(t), whose score is zero and whose reverse flow expands every particle).\n")


def error_budget_section(df: pd.DataFrame) -> str:
    """Per target: what the exact score reaches through the same samplers (model error zero), beside
    the noise floor at the oracle's sample size and the discretisation coupling bounds."""
    cols = ["oracle.n", "oracle.floor_mean", "oracle.floor_q95", "oracle.w2_ode_p0", "oracle.w2_sde_p0",
            "oracle.w2_ode_sde", "oracle.disc_ode", "oracle.disc_sde"]
    if not all(c in df for c in cols):
        return ""
    table = df.groupby("target")[cols].first().loc[_target_order(df["target"].unique())]
    table.columns = ["n", "floor (mean)", "floor (95%)", "W2²(ODE, p0)", "W2²(SDE, p0)", "W2²(ODE, SDE)",
                     "disc. ODE bound", "disc. SDE bound"]
    no_density = table.index[table["W2²(ODE, p0)"].isna()].tolist()  # samples-only targets have no oracle
    table = table.drop(index=no_density)
    absent = ([f"Not available for {', '.join(no_density)}: samples only, no exact density (and no oracle).", ""]
              if no_density else [])
    return "\n".join([
        "## Error budget: the exact score through the same samplers", "",
        "With the exact score the model error is zero, so what remains is sampling noise (the floor) and "
        "discretisation. `disc. ODE bound` is E‖x_h − x_ref‖² between the Euler ODE and an adaptive DOP853 "
        "solution from the same prior points, `disc. SDE bound` is E‖x_h − x_h/4‖² between Euler–Maruyama at "
        "step h and h/4 on the same Brownian path: couplings, so upper bounds on the W2² they stand for. "
        "The same two bounds for each trained model are in the next table. A bound far above the W2² it stands "
        "for is not informative: a few trajectories that diverge far outside the box can carry almost all of the "
        "mean, so each model's bound is shown beside the share of coupled pairs with an end outside the grid's box "
        "(the samples the grid W2² drops) and the bound over the pairs inside it.", "",
        table.to_markdown(floatfmt=".5f"), "", *absent])


def settings_section(case: Case) -> str:
    cfg = case.config
    lines = ["## Settings", "", f"Target, SDE, model: `{cfg['sde']['name']}` process, model "
             f"`{json.dumps(cfg['model'])}`, method `{cfg['method']['name']}`.", ""]
    for section in ("train", "sample", "metrics"):
        paper = PAPER_DEFAULTS[section]
        rows = [(k, json.dumps(v), json.dumps(paper[k]) if k in paper else "(grid W2²)",
                 "" if v == paper.get(k) else ("scaled" if k in paper else "beyond the paper"))
                for k, v in cfg[section].items()]
        if section == "metrics":  # settings derived where the suite leaves them unset: the value used
            rows += [(k, json.dumps(score_residual_points(cfg[section])), "—", f"unset: {note}")
                     for k, note in DERIVED_METRICS.items() if k not in cfg[section]]
        table = pd.DataFrame(rows, columns=[section, "this run", "paper (authors' code)", ""]).set_index(section)
        lines += [table.to_markdown(), ""]
    diff = pd.DataFrame(TEXT_VS_CODE, columns=["setting", "paper's text", "authors' code (used here)"])
    lines += ["Where the paper's text and the authors' code differ (the code produced the tables):", "",
              diff.to_markdown(index=False), ""]
    return "\n".join(lines)


def calibration_section(df: pd.DataFrame) -> str:
    """How far the trained baseline's W2^2(p_SDE, p0) is from Table 3's w_R = 0 row, and how much of
    that distance the estimator's own floor at this sample size accounts for."""
    base = df[df["param_w_r"] == 0.0]
    if base.empty:
        return ""
    rows = []
    for target in _target_order(base["target"].unique()):
        grp = base[base["target"] == target]
        ours, paper = grp["w2_sde_p0.value"].mean(), paper_value("w2_sde_p0", target, 0.0)
        floor = grp["floor.mean"].mean()
        within = "yes" if ours <= 3 * paper else "no"
        rows.append((target, f"{ours:.6f}", f"{paper:.6f}", f"{ours / paper:.2f}", f"{floor:.6f}",
                     f"{floor / paper:.2f}", f"{max(ours - floor, 0) / paper:.2f}", within))
    table = pd.DataFrame(rows, columns=["target", "fpbench W2²(p_SDE, p0)", "paper", "ratio", "floor here",
                                        "floor / paper", "(ours - floor) / paper", "within 3x"])
    n = int(base["w2_sde_p0.n"].iloc[0]) if "w2_sde_p0.n" in base else 0
    return "\n".join(["## Calibration against Table 3 (baseline, w_R = 0)", "",
                      f"The target was the paper's Table 3 row within a factor 3. At n = {n:,} samples the "
                      "estimator's own floor (the value it reads for two draws of p0) is the column `floor here`; "
                      "the paper's 3,000,000 samples have a far lower floor, so the last ratios subtract ours.", "",
                      table.to_markdown(index=False), ""])


def figures(df: pd.DataFrame, out_dir: Path, stem: str, param: str = "param_w_r") -> list[Path]:
    """Fig. 4 (R~ vs L_DSM normalised by the exact score's) and Fig. 5 (R~ vs W2(p_ODE, p_SDE)) from the
    measured cases."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    if "log_fp_residual" not in df:
        return paths
    data = df.assign(w2_gap=np.sqrt(df["w2_ode_sde.value"].clip(lower=0)), w_R=df[param].astype(str),
                     dsm_normalised=df["dsm_loss"] / df["dsm_loss_exact"])
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    for name, y, ylabel, title in [("fig5", "w2_gap", "W2(p_ODE, p_SDE)", "Fig. 5: R̃ against the ODE-SDE gap"),
                                   ("fig4", "dsm_normalised", "L_DSM / L_DSM(exact score)",
                                    "Fig. 4: R̃ against the normalised DSM loss")]:
        shown = data[np.isfinite(data[y]) & (data["log_fp_residual"] > 0)]
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
        sns.scatterplot(data=shown, x="log_fp_residual", y=y, hue="target", style="w_R", s=70, ax=ax)
        ax.set_xscale("log")
        decades = np.log10(shown["log_fp_residual"].max() / shown["log_fp_residual"].min()) if len(shown) else 0
        # a few labelled ticks whatever the span (1, 2, 5 per decade on a short axis; one per decade on a
        # long one), never the overlapping minor labels
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0,) if decades > 2 else (1.0, 2.0, 5.0), numticks=8))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("R̃(θ, φθ, 0)")
        ax.set_ylabel(ylabel)
        ax.set_title(title + _missing_note(data, shown), fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{stem}-{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def _missing_note(data: pd.DataFrame, shown: pd.DataFrame) -> str:
    """The models a figure leaves out, said on it (no finite value: e.g. a sampler that left the grid)."""
    left = data.drop(shown.index)
    if left.empty:
        return ""
    import textwrap

    cells = ", ".join(sorted({f"{t} w_R = {w}" for t, w in zip(left["target"], left["w_R"])}))
    return "\n" + textwrap.fill(f"{len(left)} of {len(data)} models not shown (no finite value): {cells}", 70)


def write_report(data: dict, scale: str, store: Store, out: Path, seeds: int | None = None,
                 calibration_reps: int = 1000, log=None, where: str | None = None) -> Path:
    """Write the suite's report at a scale to ``out`` (markdown) and its figures beside it; for a suite
    with ``claims = true`` also the claims table, their calibration (``calibration_reps`` synthetic
    data sets per test) and Figs. 1, 3. ``where``: the results' source as the report names it (default
    the store)."""
    cases = expand(data, scale, seeds)
    df, records, missing = collect(store, cases)
    if df.empty:
        raise FpbenchError(f"no finished cases of suite {data['suite']['name']!r} at scale {scale!r} under "
                         f"{store.root}; run `fpbench run {data['suite']['name']} --scale {scale}` first")
    if log:
        log(f"report: {len(df)} finished case(s) of {len(cases)} read from {store.root}")
    stem = out.stem
    df, param = sweep_column(df)
    figs = figures(df, out.parent / "figures", stem, param)
    claim_lines, summary = [], []
    if data["suite"].get("claims"):
        claim_lines, claim_figs, claim_missing, summary = claims_part(data, scale, seeds, store, df, records, out,
                                                                       stem, calibration_reps, log)
        figs += claim_figs
        missing += claim_missing
    lines = [f"# fpbench report: suite `{data['suite']['name']}`, scale `{scale}`", "",
             f"{data['suite'].get('description', '')}", "",
             f"Generated {datetime.date.today().isoformat()} by fpbench {__version__} from {len(df)} finished "
             f"case(s) of {len(cases)} under `{where or store.root}`; "
             f"devices: {sorted({r['device'] for r in records})}; torch "
             f"{records[0]['torch']}. Each cell: fpbench's mean and 95% interval ({_interval_kind(df, param)}), the "
             "noise floor (the same estimator on two independent draws of p0 at the same sample size: what "
             "W2² reads when the distributions are equal), and the paper's value.", ""]
    if missing:
        lines += [f"**Not finished ({len(missing)}):** " + ", ".join(missing), ""]
    lines += summary
    for table in TABLES:
        lines += [f"## {TABLE_TITLES[table]}", "", table_markdown(table_frame(df, table, param)), ""]
    lines += claim_lines
    comparable = paper_comparable(df)
    if not comparable.empty:
        lines += [distance_section(comparable, paper_sds(store.root / STORE_DIR)), trends_section(comparable),
                  calibration_section(comparable)]
    lines += [dropped_samples_section(df)]
    lines += [error_budget_section(df)]
    lines += ["## Trained models", "", diagnostics_frame(df, param).to_markdown(floatfmt=".4g"), "",
              _timing(records), ""]
    lines += [f"![{p.stem}](figures/{p.name})" for p in figs] + [""]
    lines += [settings_section(cases[0])]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return out


def claims_part(data, scale, seeds, store, df, records, out, stem, calibration_reps, log=None):
    """(markdown lines, figure paths, labels of missing companion cases) of the claims sections; ``log`` hears
    each stage as it starts (the calibration takes minutes at 1,000 sets per test)."""
    log = log or (lambda message: None)
    from ..analysis import claims
    from . import claims_report as cr

    fig_dir = out.parent / "figures"
    curl_df, curl_records, missing = None, [], []
    if data["suite"].get("score_models"):
        companion = load_suite(data["suite"]["score_models"])
        curl_df, curl_records, missing = collect(store, expand(companion, scale, seeds))
    log("report: the exact score's oracle and the claims")
    oracles = claims.oracle_frame(records, store)
    outcomes = claims.evaluate_claims(df, oracles, curl_df, data["suite"]["sde"])
    log(f"report: calibration of the claim tests ({calibration_reps} synthetic data sets per kind and test)")
    cal = claims.calibration(df, curl_df, oracles, reps=calibration_reps)
    log("report: figures")
    cal_fig = cr.calibration_figure(cal, fig_dir / f"{stem}-calibration.png")
    figs = [p for p in (cr.fig1(curl_records, store, fig_dir / f"{stem}-fig1.png"),
                        cr.fig3(records, store, fig_dir / f"{stem}-fig3.png")) if p is not None]
    authors, seeds = authors_outcomes(store) if data["suite"]["name"] == "paper" else (None, 0)
    lines = [cr.claims_section(outcomes, scale, beside=authors), cr.convergence_section(df),
             cr.why_section(df, outcomes), cr.calibration_section(cal, cal_fig)]
    about = data.get("scales", {}).get(scale, {}).get("about")
    return lines, figs, missing, [cr.summary_section(outcomes, df, scale, about, authors, seeds)]


def authors_outcomes(store: Store) -> tuple:
    """(C1-C5 decided on the authors' published models, the fewest sampling seeds any of them has
    finished) when the store holds any of their finished cases (``fpbench reference claims``), else
    (None, 0)."""
    from ..analysis import claims
    from ..analysis.published import authors_results

    df, _records, _missing = authors_results(store)
    if df.empty:
        return None, 0
    return claims.trained_claims(df, fixed_checkpoints=True), int(claims.seeds_per_model(df).min())


def _interval_kind(df: pd.DataFrame, param: str = "param_w_r") -> str:
    from ..analysis.claims import seeds_per_model

    seeds = seeds_per_model(df, param).min()
    return f"Student t over {seeds} seeds" if seeds >= 2 else "bootstrap over the samples of one seed"


def _timing(records: list[dict]) -> str:
    train = sum(r["train"]["seconds"] for r in records)
    sample = sum(r["sample_seconds"] for r in records)
    return (f"Time (measured, all cases): training {train:.0f} s, sampling {sample:.0f} s "
            f"on {sorted({r['device'] for r in records})}.")
