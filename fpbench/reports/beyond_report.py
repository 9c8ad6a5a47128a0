"""Reports of suites beyond the paper's single sweep: several methods (``methods``, ``--method``),
several SDEs (``sdes``) or a target sweep (``dims``). Each says which of claims C1-C5 carry over
to each setting (``fpbench.analysis.compare.setting_claims``), and for several methods ranks them against
the baseline and decomposes their gaps."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..analysis import claims as cl
from ..analysis import compare as cmp
from ..core.convergence import final_loss
from ..core.errors import FpbenchError
from ..run.results import collect
from ..run.suite import expand, method_specs


def is_beyond(data: dict) -> bool:
    suite = data["suite"]
    return "methods" in data or isinstance(suite["sde"], list) or bool(suite.get("target_sweep"))


def _frame(data: dict, store, cases) -> tuple[pd.DataFrame, list, list]:
    df, records, missing = collect(store, cases)
    if df.empty:
        return df, records, missing
    dims = [r["config"]["target"]["params"].get("dim") for r in records]
    df["target"] = [f"{t}(d={d})" if d is not None and data["suite"].get("target_sweep") else t
                    for t, d in zip(df["target"], dims)]
    df["label"] = cmp.method_labels(data, df)
    for key in ("loss", "dsm", "log_fp", "score_fp"):  # where training ended on its loss and each term
        values = np.array([final_loss(r.get("train", {}).get("history") or [], key) for r in records])
        if np.isfinite(values).any():
            df[f"final.{key}"] = values
    return df, records, missing


def _cell(values: np.ndarray) -> str:
    return _fmt(*cmp.mean_ci(values))


def sweep_tables(df: pd.DataFrame, weight: str) -> list[str]:
    """Tables 1-3 of one setting: target x weight, mean [95% t interval over seeds], floor beside."""
    lines = []
    for table, name in cmp.TABLES.items():
        piv = df.groupby(["target", weight])[f"{table}.value"].apply(lambda v: _cell(v.to_numpy())).unstack()
        piv["floor"] = df.groupby("target")["floor.mean"].mean().map(lambda v: f"{v:.4f}")
        lines += [f"**{name}** by {weight.removeprefix('param_')}", "", piv.to_markdown(), ""]
    return lines


def settings_of(data: dict, df: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, str, str]]:
    """Each setting whose claims are tested: name -> (rows, weight column, residual column)."""
    out = {}
    if isinstance(data["suite"]["sde"], list):
        for sde in data["suite"]["sde"]:
            out[f"SDE {sde}"] = (df[df["sde"] == sde], "param_w_r", "log_fp_residual")
    elif "methods" in data:
        out.update(regulariser_settings(data, df))
    else:
        out["all targets"] = (df, "param_w_r", "log_fp_residual")
    return out


def _regulariser(name: str, param: str, fixed: dict) -> str | None:
    """The one non-DSM loss term of method ``name`` when ``param`` is its weight (None if it has another
    shape: no regulariser, several, or one fpbench measures no residual of)."""
    from ..train.methods import REGULARISER_RESIDUALS, make_method

    try:
        weights = make_method(name, **{**fixed, param: 1.0}).weights
    except (ValueError, TypeError):
        return None
    terms = [t for t, w in weights.items() if t != "dsm" and w]
    return terms[0] if len(terms) == 1 and terms[0] in REGULARISER_RESIDUALS else None


def _dsm_alone(data: dict, df: pd.DataFrame, model: str) -> pd.DataFrame:
    """Rows of the suite's methods that train ``model`` by DSM alone (no other term declared)."""
    from ..train.methods import make_method

    names = {s["name"] for s in method_specs(data) if s["model"] == model and not s.get("sweep")
             and set(make_method(s["name"], **s.get("params", {})).weights) == {"dsm"}}
    return df[df["method"].isin(names) & (df["model"] == model)]


def regulariser_settings(data: dict, df: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, str, str]]:
    """One setting per regularised method family of the suite, found from the methods themselves (not
    their names): a [[methods]] entry sweeping one parameter that weights one regulariser with a measured
    residual (``REGULARISER_RESIDUALS``). Its rows are every case of that method and model (its own
    weight-0 entry included); with none at weight 0, the suite's DSM-alone cases of the model stand in."""
    from ..train.methods import REGULARISER_RESIDUALS

    out = {}
    for spec in method_specs(data):
        if len(spec.get("sweep", {})) != 1:
            continue
        param = next(iter(spec["sweep"]))
        term = _regulariser(spec["name"], param, spec.get("params", {}))
        rows = df[(df["method"] == spec["name"]) & (df["model"] == spec["model"])]
        weight = f"param_{param}"
        if term is None or rows.empty or weight not in rows:
            continue
        if not (rows[weight] == 0).any():
            base = _dsm_alone(data, df, spec["model"]).copy()
            base[weight] = 0.0
            rows = pd.concat([base, rows])
        out[spec.get("label") or f"{spec['name']} ({spec['model']})"] = (rows, weight, REGULARISER_RESIDUALS[term])
    return out


def skipped_lines(outcomes: list) -> list[str]:
    """One bullet per reason why claims were not decided, naming the claims it holds for (the gate's
    reason is the same for all of C1-C5 when the models fail it)."""
    claims_by_reason: dict[str, list[str]] = {}
    for o in outcomes:
        if o.skipped:
            claims_by_reason.setdefault(o.skipped, []).append(o.claim.key)
    return [f"- {', '.join(keys)}: {reason}" for reason, keys in claims_by_reason.items()]


def write_beyond_report(data: dict, scale: str, store, out: Path, seeds: int | None = None,
                        where: str | None = None) -> Path:
    """The report of a suite beyond the paper (``is_beyond``); ``where`` as in ``write_report``."""
    cases = expand(data, scale, seeds)
    df, records, missing = _frame(data, store, cases)
    if df.empty:
        raise FpbenchError(f"no finished cases of suite {data['suite']['name']!r} at scale {scale!r} under "
                         f"{store.root}; run `fpbench run {data['suite']['name']} --scale {scale}` first")
    name = data["suite"]["name"]
    lines = [f"# fpbench report: suite `{name}`, scale `{scale}`", "", data["suite"].get("description", ""), "",
             f"Generated {datetime.date.today().isoformat()} by fpbench {__version__} from {len(df)} finished "
             f"case(s) of {len(cases)} under `{where or store.root}`; "
             f"devices {sorted({r['device'] for r in records})}, torch "
             f"{records[0]['torch']}. Cells: mean over seeds [95% Student t interval when there are 2 or more "
             "seeds]; floor: the same estimator on two independent draws of p0 (what W2² reads for equal "
             "distributions).", ""]
    if missing:
        lines += [f"**Not finished ({len(missing)}):** " + ", ".join(missing), ""]
    settings = settings_of(data, df)
    verdicts = {s: cmp.setting_claims(rows, weight, residual) for s, (rows, weight, residual) in settings.items()}
    mine = user_verdicts(data, df)  # the ranking's paired tests, once for the answer and the summary
    lines += answer_lines(data, df, mine)
    lines += summary_lines(verdicts, df, scale, data["scales"][scale].get("about"), user_summary_lines(data, df, mine),
                           {setting: rows for setting, (rows, _weight, _residual) in settings.items()})
    lines += ["## Do the paper's claims C1-C5 carry over?", "",
              "The claims machinery of `fpbench.analysis.claims` (the same tests, gates and thresholds as "
              "reports/paper-quick.md) on each setting: for a regulariser other than R̃ its own weight plays "
              "w_R and its own residual plays R̃. SKIPPED says why a claim cannot be decided here.", "",
              cmp.carry_over_table(verdicts).to_markdown(), ""]
    for setting, outcomes in verdicts.items():
        if skipped := skipped_lines(outcomes):
            lines += [f"Skipped in {setting}:", *skipped, ""]
    if "methods" in data:
        lines += gate_section(df)
        lines += warm_section(df)
        lines += methods_sections(data, df)
        lines += cost_section(data, df, records)
        lines += modes_section(df)
    if any(r["config"]["metrics"].get("distance", "grid") != "grid" for r in records):
        lines += far_samples_section(df, store, radius=max(abs(e) for e in records[0]["config"]["train"]["box"]))
    fig = gap_figure(settings, out.parent / "figures" / f"{out.stem}-gap.png",
                     {label: df[df["label"] == label] for label in user_labels(df)})
    if fig is not None:
        lines += [f"![gap against the regulariser weight](figures/{fig.name})", ""]
    for setting, (rows, weight, _res) in settings.items():
        lines += [f"## Tables 1-3: {setting}", "", *sweep_tables(rows, weight)]
    train = sum(r["train"]["seconds"] for r in records)
    sample = sum(r["sample_seconds"] for r in records)
    lines += [f"Time (measured, all cases): training {train:.0f} s, sampling {sample:.0f} s.", ""]
    from .suite_report import settings_section

    lines += [settings_section(cases[0])]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return out


def user_labels(df: pd.DataFrame) -> list[str]:
    """The methods a user added with --method (``suite.with_methods`` labels them so)."""
    return [label for label in dict.fromkeys(df["label"]) if "(--method " in label]


def user_verdicts(data: dict, df: pd.DataFrame) -> list:
    """``compare.user_verdicts`` of every --method against the suite's baseline (none without --method)."""
    mine = user_labels(df)
    if not mine or "methods" not in data:
        return []
    return cmp.user_verdicts(df, mine, cmp.baseline_label(data))


def answer_lines(data: dict, df: pd.DataFrame, verdicts: list) -> list[str]:
    """Is the user's method better? One line per --method, target and table against the suite's baseline
    (``verdicts``: ``user_verdicts``)."""
    if not verdicts:
        return []
    lines = ["## Your method against the baseline", "",
             f"Against **{cmp.baseline_label(data)}**, per target and distance: the paired sign-flip test over seeds "
             f"of log(baseline / yours) at α = {cl.CLAIM_SETTINGS[cl.ALPHA]} (the ratio is yours over the baseline's "
             "W2², lower is better), decided only when both methods' models pass the convergence gate.", ""]
    lines += [f"- {v.method}, {v.target}, {v.table}: {v.words}" for v in verdicts]
    return lines + [""]


def user_summary_lines(data: dict, df: pd.DataFrame, verdicts: list) -> list[str]:
    """One Summary line per --method: how many of its comparisons with the baseline (``verdicts``:
    ``user_verdicts``) say better, worse, not distinguishable, or cannot tell (details in the answer section)."""
    lines = []
    for method in dict.fromkeys(v.method for v in verdicts):
        kinds = [v.kind for v in verdicts if v.method == method]
        lines.append(f"- **Your method {method}** against {cmp.baseline_label(data)}: "
                     + ", ".join(f"{kind} in {kinds.count(kind)}" for kind in
                                 (cmp.BETTER, cmp.WORSE, cmp.SAME, cmp.CANNOT_TELL))
                     + f" of {len(kinds)} comparisons (target x distance; the section above gives each with its "
                     "reason).")
    return lines


def summary_lines(verdicts: dict, df: pd.DataFrame, scale: str, about: str | None, mine: list[str] = (),
                  rows: dict | None = None) -> list[str]:
    """The answer first: the user's methods (``mine``: ``user_summary_lines``), per setting the claims'
    verdicts with reasons and the gate's tier its models (``rows``) reach, the convergence gate's count, and
    what the scale can show (its ``about`` line)."""
    from .claims_report import convergence_lines, tier_lines, verdict_lines

    lines = ["## Summary", "", *mine]
    for setting, outcomes in verdicts.items():
        lines += verdict_lines(outcomes, prefix=f"{setting}: ")
        lines += tier_lines((rows or {}).get(setting), prefix=f"{setting}: ")
    lines += gate_count_lines(df) or convergence_lines(df)
    if about:
        lines.append(f"- **What scale `{scale}` can show**: {about}")
    return lines + [""]


def far_samples_section(df: pd.DataFrame, store, radius: float) -> list[str]:
    """Point distances keep every sample, so a few trajectories that run away dominate W2²; the share
    of ODE and SDE samples outside the residual box [-radius, radius]^d says how many there are."""
    rows = []
    for row in df.itertuples():
        data = store.samples(row.key)
        if data is None:
            continue
        share = {k: float((np.abs(data[k]).max(axis=1) > radius).mean()) for k in ("ode", "sde", "p0")}
        rows.append({"target": row.target, "w_r": row.param_w_r, "ODE outside": share["ode"],
                     "SDE outside": share["sde"], "p0 outside": share["p0"],
                     "ODE max |x|": float(np.abs(data["ode"]).max())})
    if not rows:
        return []
    table = pd.DataFrame(rows).groupby(["target", "w_r"]).mean()
    return ["## Samples far from the data", "",
            f"Exact and sliced W2² keep every sample (the paper's grid drops those outside it), so a few ODE "
            f"trajectories that run away dominate them. Share of samples outside the residual box "
            f"[-{radius}, {radius}]^d, and the largest |x| of an ODE sample:", "",
            table.to_markdown(floatfmt=".3g"), ""]


def gap_figure(settings: dict, path: Path, yours: dict | None = None) -> Path | None:
    """W2²(ODE, SDE) and W2²(SDE, p0) against the regulariser weight, one column per setting, one line
    per target (mean over seeds, each seed a point); ``yours`` ({label: rows} of the methods a user added,
    which have no weight) drawn in every panel as a dashed level per target (its mean), so that each curve
    can be read against them."""
    import seaborn as sns

    from .claims_report import pyplot

    frames = []
    for setting, (rows, weight, _res) in settings.items():
        for table, name in (("w2_ode_sde", "W2²(ODE, SDE)"), ("w2_sde_p0", "W2²(SDE, p0)")):
            frames.append(pd.DataFrame({"setting": setting, "quantity": name, "target": rows["target"],
                                        "weight": rows[weight].astype(float), "value": rows[f"{table}.value"]}))
    full = pd.concat(frames)
    data = full.dropna()
    if data.empty:
        return None
    left = full[full["value"].isna()]
    plt = pyplot()
    data["weight"] = data["weight"].map(lambda w: f"{w:g}")
    order = list(dict.fromkeys(data["target"]))
    palette = dict(zip(order, sns.color_palette(n_colors=len(order))))
    grid = sns.catplot(data=data, x="weight", y="value", hue="target", hue_order=order, palette=palette,
                       col="setting", row="quantity",
                       kind="point", sharey=False, height=2.8, aspect=1.2, errorbar=None)
    grid.set(yscale="log")
    grid.set_titles("{col_name}\n{row_name}", size=9)
    grid.set_axis_labels("regulariser weight", "W2²")
    _draw_levels(grid, yours or {}, palette)
    if not left.empty:  # said on the figure, not dropped silently
        keys = ["setting", "quantity", "target", "weight"]
        totals = full.groupby(keys).size()
        cells = [f"{s}, {q}, {t}, weight {w:g} ({k} of {totals[(s, q, t, w)]} seeds)"
                 for (s, q, t, w), k in left.groupby(keys).size().items()]
        grid.figure.suptitle(f"left out (no finite W2²: the samplers left the grid): {'; '.join(cells[:6])}"
                             + (f" and {len(cells) - 6} more" if len(cells) > 6 else ""), fontsize=7, y=1.0)
        grid.figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.savefig(path, dpi=110)
    plt.close("all")
    return path


def _draw_levels(grid, yours: dict, palette: dict) -> None:
    """Each user method's mean W2² per target as a dashed horizontal line in every panel of its quantity, in
    the target's colour (``palette``), said under the figure."""
    quantities = {"W2²(ODE, SDE)": "w2_ode_sde", "W2²(SDE, p0)": "w2_sde_p0"}
    for (row, _col), ax in grid.axes_dict.items():
        for style, rows in zip(("--", ":", "-."), yours.values()):
            for target, grp in rows.groupby("target"):
                value = grp[f"{quantities[row]}.value"].mean()
                if np.isfinite(value) and value > 0:
                    ax.axhline(value, color=palette.get(target, "k"), ls=style, lw=1)
    if yours:
        names = ", ".join(f"{label.split(' (--method')[0]} {style}" for label, style in zip(yours, ("--", ":", "-.")))
        grid.figure.text(0.01, 0.005, f"horizontal lines: {names} (no weight: its mean per target, in the "
                         "target's colour)", fontsize=7)


GATE_PARTS = {"score ratio": "score ratio", "relative score error": "score error", "samples inside": "grid share"}


def gate_frame(df: pd.DataFrame, checks: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per target and method (label): how many models pass the convergence gate, their evidence (means over
    seeds) beside the yardstick the gate measures them against (``claims.authors_weight``), which parts of the
    gate the failing ones fail, and their loss plateau (reported, not gated). ``checks``: ``df``'s
    ``claims.convergence_checks`` where the caller has them."""
    checks = (cl.convergence_checks(df) if checks is None else checks).copy()
    checks["label"] = df["label"].to_numpy()
    checks["ratio_max_late"] = df["convergence.ratio_max_late"].to_numpy()
    checks["plateau"] = df.get("convergence.loss_plateau", pd.Series(np.nan, index=df.index)).to_numpy()
    checks["own_weight"] = checks["authors_w_r"].notna()
    rows = []
    for (target, label), g in checks.groupby(["target", "label"], sort=False):
        failed = [f for fails in g["fails"] for f in fails]
        parts = [name for key, name in GATE_PARTS.items() if any(key in f for f in failed)]
        rows.append({"target": target, "method": label, "pass": f"{int((~g['fails'].map(bool)).sum())} of {len(g)}",
                     "rel. score error": g["rel_error"].mean(),
                     "x yardstick": (g["rel_error"] / g["authors_rel_error"]).mean(),
                     "yardstick": "authors' model, same w_R" if g["own_weight"].all() else "authors' largest",
                     "late score ratio": f"{g['ratio_min_late'].min():.2f}-{g['ratio_max_late'].max():.2f}",
                     "loss plateau": g["plateau"].median(), "failing on": ", ".join(parts) or "-"})
    return pd.DataFrame(rows)


def gate_count_lines(df: pd.DataFrame) -> list[str]:
    """With several methods: how many of all and of each method's models pass the convergence gate (the Summary
    line; ``claims_report.convergence_lines`` names the failing cells by w_R alone, which a method does not tell)."""
    if "convergence.rel_error" not in df or "label" not in df or df["label"].nunique() < 2:
        return []
    passes = pd.Series(~cl.convergence_checks(df)["fails"].map(bool).to_numpy(), index=df.index)
    counts = passes.groupby(df["label"], sort=False).agg(["sum", "size"])
    each = "; ".join(f"{label} {int(c['sum'])} of {int(c['size'])}" for label, c in counts.iterrows())
    return [f"- **Convergence**: {int(counts['sum'].sum())} of {len(df)} trained models pass the gate; by method "
            f"(the gate section below gives the evidence): {each}."]


def gate_section(df: pd.DataFrame) -> list[str]:
    """``gate_frame`` with what it measures, and the loss plateau of the models that pass against those that
    fail: whether the failing ones had stopped improving (then what they fail on is where their method led,
    not unfinished training)."""
    if "convergence.rel_error" not in df:
        return []
    checks = cl.convergence_checks(df)
    passing = checks["fails"].map(bool).to_numpy() == False  # noqa: E712
    plateau = df.get("convergence.loss_plateau", pd.Series(np.nan, index=df.index)).to_numpy(dtype=float)
    low, high = cl.CLAIM_SETTINGS[cl.GATE_RATIO_BAND]
    lines = ["## The convergence gate, per method", "",
             "A model speaks for its method only once it has learned the target: the gate (fpbench/analysis/"
             f"claims.py) asks for a score ratio within [{low:g}, {high:g}] at late times, a relative score error at "
             f"most {cl.CLAIM_SETTINGS[cl.GATE_ERROR_FACTOR]:g}x the yardstick, and ODE and SDE samples inside the "
             "grid. The yardstick is the authors' published model of the same target and w_R for the methods that "
             "minimise the authors' loss (DSM + w_R R̃ on a potential, however it is reached), and the authors' "
             "largest error on the target for every other method (they trained none). A comparison or claim is "
             "decided only on models that pass. A regulariser may pull the score away from the data's by design; "
             "the gate cannot tell that from unfinished training, so the loss plateau (the relative change of the "
             "median training loss over the last 20% of steps, not gated) is shown beside: "
             f"median {_median_of(plateau, passing, 'pass')}; {_median_of(plateau, ~passing, 'fail')}.", "",
             gate_frame(df, checks).to_markdown(index=False, floatfmt=".3g"), ""]
    return lines


def warm_section(df: pd.DataFrame) -> list[str]:
    """A warm start against the same loss trained from scratch (``compare.warm_versus_cold``); none without a
    warm-started method."""
    table = cmp.warm_versus_cold(df)
    if table.empty:
        return []
    table["warm / cold"] = [f"{r:.3g} [{lo:.3g}, {hi:.3g}]" for r, lo, hi in
                            zip(table.pop("warm / cold"), table.pop("ci_low"), table.pop("ci_high"))]
    return ["## A warm start against the same loss from scratch", "",
            "A warm-started method trains the loss of the method it starts from, with its own parameters, from "
            "that method's trained weights instead of from a fresh initialisation. Paired by target and seed with "
            "the models trained from scratch on the same loss and parameters: the final training loss (the median "
            "of the logged loss, and of each term, over the last 20% of steps) says whether the warm start reached "
            "as low a value of the loss it minimises; the relative score error, how far it is from the data's "
            "score. Geometric mean ratio warm / cold [95% bootstrap interval] and the sign-flip test's p each way "
            f"(α = {cl.CLAIM_SETTINGS[cl.ALPHA]}).", "",
            table.to_markdown(index=False, floatfmt=".3g"), ""]


def _median_of(values: np.ndarray, keep: np.ndarray, verb: str) -> str:
    """'M over the N <verb>ing models', or 'no model <verb>s'."""
    if not keep.any():
        return f"no model {verb}s"
    return f"{np.nanmedian(values[keep]):.3g} over the {int(keep.sum())} {verb}ing models"


def methods_sections(data: dict, df: pd.DataFrame) -> list[str]:
    base = cmp.baseline_label(data)
    rank = cmp.ranking_frame(df, base)
    rank["value"] = [_fmt(m, lo, hi) for m, lo, hi in zip(rank["mean"], rank["ci_low"], rank["ci_high"])]
    for col in ("p_lower", "p_higher", "log_ratio"):
        if col not in rank:
            rank[col] = np.nan
    rank["baseline"] = base
    gates = {(m, t): cmp.gate_failures(df, [m, base], t) for m, t in set(zip(rank["method"], rank["target"]))}
    rank["vs baseline"] = [versus(r, gates[(r.method, r.target)]) for r in rank.itertuples()]
    alpha = cl.CLAIM_SETTINGS[cl.ALPHA]
    lines = ["## Methods ranked per target", "",
             f"Baseline: **{base}**. Rank 1 = lowest mean. 'vs baseline': the paired sign-flip permutation test "
             "over the (target, seed) pairs of the mean log ratio log(baseline / method): p of 'lower than the "
             f"baseline' (better), p of 'higher', and the ratio exp(effect); significant at α = {alpha:g} is marked "
             "**better** or **worse** only when the method's and the baseline's models on that target (all targets "
             "for the pooled rows) pass the convergence gate, else 'not decided' says how many fail.", ""]
    for table in cmp.TABLES.values():
        sub = rank[rank["table"] == table][["target", "method", "value", "rank", "vs baseline"]]
        lines += [f"**{table}**", "", sub.to_markdown(index=False), ""]
    dec = cmp.decomposition_frame(df)
    lines += ["## Where each gap comes from", "",
              "Per target and method (means over seeds): the measured ODE-SDE gap W2²(ODE, SDE); the exact "
              "score's gap through the same samplers and step count (what is left with no model error); "
              "model error = gap - exact gap; the discretisation coupling bounds of the trained model (Euler "
              "against an adaptive DOP853 reference from the same prior points, ODE and SDE); and the "
              "sampling-noise floor.", "", dec.to_markdown(index=False, floatfmt=".4g"), ""]
    return lines


def cost_frame(data: dict, df: pd.DataFrame, records: list) -> pd.DataFrame:
    """One row per method (label) with what the run's records measured: training seconds per model (mean
    [95% t interval over models]; an ensemble's wall time over its size, summed over resumed chunks: members
    of one ensemble share it equally, whatever their methods), the seconds of the model a warm start begins
    from (``warm_start_from``), and sampling seconds per model."""
    from ..train.methods import make_method

    rows = pd.DataFrame({"label": df["label"].to_numpy(), "method": df["method"].to_numpy(),
                         "seconds": [r["train"].get("seconds", np.nan) for r in records],
                         "ensemble": [r["train"].get("ensemble", 1) for r in records],
                         "sample": [r["sample_seconds"] for r in records]})
    out = []
    for label, g in rows.groupby("label", sort=False):
        warm = getattr(make_method(g["method"].iloc[0]), "warm_start_from", None)
        source = rows[_is_method(df, warm)]["seconds"].mean() if warm else np.nan
        out.append({"method": label, "models": len(g), "training s per model": _seconds(g["seconds"].to_numpy()),
                    "ensemble sizes": ", ".join(str(int(e)) for e in sorted(set(g["ensemble"]))),
                    "+ its warm start's source": f"{source:.0f} s" if warm else "none",
                    "sampling s per model": f"{g['sample'].mean():.0f}"})
    return pd.DataFrame(out)


def _seconds(values: np.ndarray) -> str:
    mean, low, high = cmp.mean_ci(values)
    return f"{mean:.0f}" + (f" [{low:.0f}, {high:.0f}]" if np.isfinite(low) else " (one model)")


def _is_method(df: pd.DataFrame, spec: dict) -> np.ndarray:
    """Which rows of ``df`` are method ``spec`` ({name, params}) with exactly those parameters."""
    keep = df["method"] == spec["name"]
    for name, value in spec["params"].items():
        keep &= df[f"param_{name}"] == value if f"param_{name}" in df else False
    return keep.to_numpy()


def cost_section(data: dict, df: pd.DataFrame, records: list) -> list[str]:
    """What each method cost the run (``cost_frame``), and where its per-step cost is timed."""
    name = data["suite"]["name"]
    return ["## What each method cost", "",
            "Recorded by the run (each case's train record): training seconds per model are the wall time of the "
            "ensemble that trained it over the ensemble's size, summed over the chunks of a resumed run. Members of "
            "one ensemble share it equally whatever their methods, and the machine's load differed between "
            f"chunks: the per-step cost of each method under equal conditions is `fpbench bench --suite {name} "
            "--scale SCALE` (one model per method, timed in turn). A warm-started method also needs the model it "
            "starts from (trained once; its recorded seconds beside).", "",
            cost_frame(data, df, records).to_markdown(index=False), ""]


def modes_section(df: pd.DataFrame) -> list[str]:
    """Spurious modes (Plainer et al.): per target and method, how many potential models' densities
    exp(phi) at small t have a mode that p_t lacks, and the mass they put where p_t has none
    (fpbench.core.modes), beside how many of those models pass the convergence gate."""
    from dataclasses import asdict

    from ..analysis import claims as cl
    from ..core.modes import ModeSettings

    if "modes_spurious" not in df or df["modes_spurious"].isna().all():
        return []
    rows = df[df["modes_spurious"].notna()].copy()
    rows["passes"] = (~cl.convergence_checks(rows)["fails"].map(bool)).to_numpy() \
        if "convergence.rel_error" in rows else False
    table, verdicts = [], []
    for (target, label), g in rows.groupby(["target", "label"], sort=False):
        with_mode = int((g["modes_spurious"] > 0).sum())
        table.append({"target": target, "method": label, "models": len(g),
                      "with a spurious mode": with_mode,
                      "spurious modes (mean)": float(g["modes_spurious"].mean()),
                      "missing modes (mean)": float(g["modes_missing"].mean()),
                      "mass where p_t has none": _cell(g["offsupport_mass"].to_numpy(dtype=float)),
                      "exact p_t's": f"{g['offsupport_mass_exact'].mean():.2g}",
                      "pass the convergence gate": f"{int(g['passes'].sum())} of {len(g)}"})
        verdicts.append(f"- {target}, {label}: {_mode_verdict(g)}")
    settings = ", ".join(f"{k} = {v:g}" for k, v in asdict(ModeSettings()).items())
    return ["## Spurious modes of potential models (Plainer et al.)", "",
            "A potential model defines a density exp(φ_θ(x, t)) beside its score. At small t it is compared "
            "with the exact p_t on a node grid (fpbench/core/modes.py): its local maxima farther than the mode "
            "radius from every mode of p_t are *spurious*, modes of p_t with no model mode near are *missing*, "
            "and the mass it puts where p_t is below `support` x its largest value is the mass where p_t has "
            "none (the exact p_t's own beside it). A model whose modes have not formed yet (not converged) "
            f"says little about this; the last column says which have. Settings: {settings}.", "",
            *verdicts, "", pd.DataFrame(table).to_markdown(index=False, floatfmt=".3g"), ""]


def _mode_verdict(g: pd.DataFrame) -> str:
    """Decided on the models that pass the convergence gate only (a model that has not learned the target
    says nothing about what training does to its modes)."""
    passes = g["passes"].map(bool)
    converged, with_mode_unconverged = g[passes], int((g.loc[~passes, "modes_spurious"] > 0).sum())
    if converged.empty:
        return (f"not decided: none of its {len(g)} model(s) passes the convergence gate ({with_mode_unconverged} "
                "of them with a mode p_t lacks).")
    rest = (f"; {len(g) - len(converged)} model(s) fail the convergence gate and are not counted "
            f"({with_mode_unconverged} of them with a mode p_t lacks)" if len(converged) < len(g) else "")
    k = int((converged["modes_spurious"] > 0).sum())
    said = "**shows it**" if k else "**does not show it**"
    return f"{said}: {k} of {len(converged)} converged model(s) with a mode p_t lacks{rest}."


def _fmt(mean, low, high) -> str:
    if not np.isfinite(mean):
        return "not measured: no samples inside the grid (the sampler left the box) or no finished seed"
    if not np.isfinite(low):
        return f"{mean:.4f} (one seed: no interval)"
    if low == high:
        return f"{mean:.4f} (interval of zero width: the seeds agree exactly)"
    return f"{mean:.4f} [{low:.4f}, {high:.4f}]"


def versus(row, not_converged: str | None) -> str:
    """A ``compare.ranking_frame`` row's test against the baseline in a cell: p each way and the ratio, marked
    better or worse at the claims' α only when no model of the pair fails the gate (``not_converged``: why)."""
    if row.method == row.baseline:
        return "baseline"
    if not np.isfinite(row.p_lower):
        return "not tested (too few finite pairs)"
    text = f"p_lower {row.p_lower:.2g}, p_higher {row.p_higher:.2g}, x{np.exp(-row.log_ratio):.2f}"
    if not_converged:
        return f"{text} (not decided: {not_converged})"
    alpha = cl.CLAIM_SETTINGS[cl.ALPHA]
    return text + (" **better**" if row.p_lower <= alpha else (" **worse**" if row.p_higher <= alpha else ""))
