"""The claims part of the paper suite's report: the paper's claims and fpbench's own checks (H1-H3), each
in its own table, the calibration of each claim test, the measured diagnostics behind claims that do not
reproduce, and Figs. 1 and 3 plus a calibration figure. Every number comes from the results store or is
computed here from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis import claims as cl
from ..analysis.stats import FAIL, INCONCLUSIVE, PASS
from ..core.convergence import EARLY_FRACTION, LATE_FRACTION
from ..run.store import Store


def claims_table(outcomes: list[cl.ClaimOutcome], beside: list[cl.ClaimOutcome] | None = None) -> pd.DataFrame:
    """One row per claim; with ``beside`` (the same claims decided on other models: the authors' published
    ones), a last column with their verdict and Holm-adjusted p."""
    rows = []
    for o in outcomes:
        r = o.result
        if r is None:
            rows.append((f"{o.claim.key} ({o.claim.source})", o.claim.paper_says, o.skipped, "—", "—", "—", o.verdict))
            continue
        p = (f"{r.pvalue:.2g} (Holm {o.p_holm:.2g})" if np.isfinite(r.pvalue) else
             f"excess test: {r.pvalue_opposite:.2g}" if np.isfinite(r.pvalue_opposite) else "— (deterministic)")
        rows.append((f"{o.claim.key} ({o.claim.source})", o.claim.paper_says, o.measured, f"{r.statistic:.4g}", p,
                     f"{r.effect_name} = {r.effect:.3g} [{r.ci_low:.3g}, {r.ci_high:.3g}] (needs ≥ {r.min_effect:.3g})",
                     f"**{r.verdict}**" + (f" (tier: {o.tier})" if o.tier else "")))
    says = "what fpbench checks" if outcomes and all(cl.is_check(o) for o in outcomes) else "what the paper says"
    frame = pd.DataFrame(rows, columns=["claim", says, "what we measured", "statistic",
                                        "p (raw, Holm)", "effect [95% CI]", "verdict"])
    if beside is not None:
        theirs = {o.claim.key: _short_verdict(o) for o in beside}
        frame[BESIDE_COLUMN] = [theirs.get(o.claim.key, "—") for o in outcomes]
    return frame


BESIDE_COLUMN = "the authors' published models (`fpbench reference claims`)"


def _short_verdict(o: cl.ClaimOutcome) -> str:
    """A verdict in a few words: with its Holm-adjusted p when a test ran, else the reason's first clause."""
    if o.result is not None:
        return f"**{o.verdict}** (Holm p = {o.p_holm:.2g})" if np.isfinite(o.p_holm) else f"**{o.verdict}**"
    return f"{o.verdict}: {(o.skipped or '').split(':')[0]}"


def claims_section(outcomes: list[cl.ClaimOutcome], scale: str, beside: list[cl.ClaimOutcome] | None = None,
                   how: str | None = None) -> str:
    """The claims table with the tests' rules and settings; ``how`` (default: the pytest command that
    decides the same claims) leads; ``beside``: see ``claims_table``."""
    checks = [o for o in outcomes if cl.is_check(o)]
    outcomes = [o for o in outcomes if not cl.is_check(o)]
    counts, alpha = pd.Series([o.verdict for o in outcomes]).value_counts(), cl.CLAIM_SETTINGS[cl.ALPHA]
    how = how or f"`pytest suites/paper --fpbench-scale {scale}` decides these same claims from the same results."
    if beside is not None:
        how += (" The last column decides the claims about trained models with the same tests, gates and "
                "calibration on the authors' 12 "
                "published models, re-sampled by fpbench (reports/reference-claims.md): a second line of evidence.")
    lines = ["## The paper's claims as tests", "",
             f"{how} Tests are one-sided in the paper's direction at α = {alpha}; PASS needs p ≤ α and an effect of at "
             "least the stated size, FAIL needs a significant effect the other way or an interval that rules out the "
             "needed size (fpbench/analysis/stats.py), with p adjusted by Holm's step-down method across the claims "
             "of this report that ran a test (a PASS must hold after the adjustment). Claims on trained models are "
             "INCONCLUSIVE when any model fails the "
             "convergence gate (next section), skipped when the baselines have not learned their target, and claims "
             "on W2² differences are skipped when the noise floor exceeds the paper's own effect. A claim decided "
             "on trained models names the highest tier of the convergence gate its models reach. "
             "Tallies: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".", "",
             claims_table(outcomes, beside).to_markdown(index=False), ""]
    if checks:
        lines += ["### fpbench's own checks (not the paper's claims)", "",
                  "True by construction or oracles of fpbench's own code: they test the harness, not the paper, and "
                  "are neither in the claims' Holm family nor in their tallies.", "",
                  claims_table(checks).to_markdown(index=False), ""]
    details = [f"- **{o.claim.key}**: {o.result.detail}" for o in outcomes + checks
               if o.result is not None and o.result.detail]
    if details:
        lines += ["Parts and details:", ""] + details + [""]
    lines += ["Settings of the claim tests:", "",
              pd.DataFrame(list(cl.CLAIM_SETTINGS.items()), columns=["setting", "value"]).to_markdown(index=False), ""]
    return "\n".join(lines)


def convergence_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per model (rows of a results frame with its ``convergence.*`` columns): the evidence beside the
    authors' level, and the gate's verdict; sorted by target, w_R and seed."""
    checks = cl.convergence_checks(df)
    se = {k: df.get(f"convergence.{k}_se", pd.Series(np.nan, index=df.index)).to_numpy()
          for k in ("ratio_min_late", "ratio_max_late", "rel_error")}
    return pd.DataFrame({
        "target": checks["target"], "w_R": checks["w_r"], "seed": checks["seed"],
        f"score ratio, t ≥ {LATE_FRACTION:g} T (min-max, ± 95%)": [
            f"{_pm(a, sa, 3)} to {_pm(b, sb, 3)}" for a, b, sa, sb in zip(
            df["convergence.ratio_min_late"], df["convergence.ratio_max_late"], se["ratio_min_late"],
            se["ratio_max_late"])],
        "rel. score error (± 95%)": [_pm(v, e, 4) for v, e in zip(checks["rel_error"], se["rel_error"])],
        "authors' model": checks["authors_rel_error"].to_numpy(),
        "ratio to authors'": (checks["rel_error"] / checks["authors_rel_error"]).to_numpy(),
        f"error t ≤ {EARLY_FRACTION:g} T / authors'": [
            f"{a:.3g} / {b:.3g}" if np.isfinite(a) else f"not recorded / {b:.3g}" for a, b in zip(
                checks["rel_error_early"], checks["authors_rel_error_early"])],
        "ODE / SDE in grid": [f"{a:.3f} / {b:.3f}" for a, b in zip(df.get("inside_grid_ode", np.nan),
                                                                    df.get("inside_grid_sde", np.nan))],
        "loss plateau": df.get("convergence.loss_plateau", pd.Series(np.nan, index=df.index)).to_numpy(),
        "gate": ["pass" if not f else "FAIL: " + "; ".join(f) for f in checks["fails"]],
        "authors' quality": ["pass" if not f else "no: " + "; ".join(f)
                             for f in cl.convergence_checks(df, cl.QUALITY_TIER)["fails"]]}
    ).sort_values(["target", "w_R", "seed"])


def _pm(value: float, se: float, digits: int) -> str:
    """value ± 1.96 se (no interval where the record predates the standard errors)."""
    return f"{value:.{digits}f}" + (f" ± {1.96 * se:.{digits}f}" if np.isfinite(se) else "")


def summary_section(outcomes: list[cl.ClaimOutcome], df: pd.DataFrame, scale: str, about: str | None,
                    authors: list[cl.ClaimOutcome] | None = None, authors_seeds: int = 0) -> str:
    """The report's answer first: the verdicts and their reasons, whether the models converged, and
    what the scale can and cannot show (its ``about`` line in the suite file); with ``authors``, the
    verdicts on the authors' published models beside (``authors_seeds``: sampling seeds per model)."""
    lines = ["## Summary", "", *tier_lines(df), *verdict_lines(outcomes), *convergence_lines(df)]
    if authors is not None:
        seeds = f"{authors_seeds} sampling seed{'s' if authors_seeds != 1 else ''} per model"
        lines += verdict_lines(authors, prefix=f"on the authors' published models ({seeds}; "
                                               "reports/reference-claims.md): ")
    if about:
        lines.append(f"- **What scale `{scale}` can show**: {about}")
    return "\n".join(lines + [""])


def tier_lines(df: pd.DataFrame, prefix: str = "") -> list[str]:
    """The highest tier of the convergence gate that every model reaches, and how many reach each tier."""
    if df is None or df.empty or "convergence.rel_error" not in df:
        return []
    reached, counts = cl.tier_reached(df), cl.tier_counts(df)
    return [f"- {prefix}**Models at tier**: {reached or 'none (some model fails the trained tier)'}; "
            + ", ".join(f"{n} of {len(df)} reach {tier}" for tier, n in counts.items()) + "."]


def verdict_lines(outcomes: list[cl.ClaimOutcome], prefix: str = "") -> list[str]:
    """One bullet per verdict of the paper's claims (those that passed or failed; the others with their
    reasons), then one for fpbench's own checks, apart."""
    checks = [o for o in outcomes if cl.is_check(o)]
    lines = _verdict_bullets([o for o in outcomes if not cl.is_check(o)], prefix)
    if checks:
        lines.append(f"- {prefix}fpbench's own checks (not the paper's claims): "
                     + ", ".join(f"{o.claim.key} {o.verdict}" for o in checks) + ".")
    return lines


def _verdict_bullets(outcomes: list[cl.ClaimOutcome], prefix: str) -> list[str]:
    lines = []
    for verdict in (PASS, FAIL, INCONCLUSIVE, "SKIPPED"):
        chosen = [o for o in outcomes if o.verdict == verdict]
        if not chosen:
            continue
        if verdict in (PASS, FAIL):
            lines.append(f"- {prefix}**{verdict}**: " + ", ".join(f"{o.claim.key} ({o.claim.source})" for o in chosen)
                         + ".")
        else:
            reasons: dict[str, list[str]] = {}
            for o in chosen:
                reason = o.skipped or (undecided_reason(o) if o.result else "")
                reasons.setdefault(reason.split(":")[0] if o.inconclusive else reason, []).append(o.claim.key)
            lines += [f"- {prefix}**{verdict}**: " + "; ".join(f"{', '.join(keys)}: {why}"
                                                              for why, keys in reasons.items()) + "."]
    return lines


def undecided_reason(o: cl.ClaimOutcome) -> str:
    """Why a test neither passed nor failed, in a few words: its p-value (Holm-adjusted where the claim is
    in the family) above α, or its effect below the size the claim needs (the full result is in the
    claims section)."""
    r = o.result
    adjusted = not np.isnan(o.p_holm)
    p = o.p_holm if adjusted else r.pvalue
    why = [f"p = {p:.3g}{' (Holm)' if adjusted else ''} > α = {r.alpha:g}"] if p > r.alpha else []
    if r.effect < r.min_effect:
        why.append(f"{r.effect_name} = {r.effect:.3g}, below the needed {r.min_effect:g}")
    return ", ".join(why) or r.summary()


def convergence_lines(df: pd.DataFrame) -> list[str]:
    """How many trained models pass the convergence gate, and which fail (none without evidence)."""
    if "convergence.rel_error" not in df:
        return []
    checks = cl.convergence_checks(df)
    failing = checks[checks["fails"].map(bool)]
    cells = sorted({f"{r.target} w_R = {r.w_r:g}" if r.w_r == r.w_r and r.w_r is not None else f"{r.target}"
                    for r in failing.itertuples()})
    return [f"- **Convergence**: {len(checks) - len(failing)} of {len(checks)} trained models pass the gate"
            + (f"; failing: {', '.join(cells)}." if cells else ".")]


def convergence_section(df: pd.DataFrame) -> str:
    """Every model's convergence evidence against the exact score, and the gate's verdict on it."""
    if "convergence.rel_error" not in df:
        return "## Convergence of the trained models\n\nNo convergence evidence stored with these results.\n"
    checks, table = cl.convergence_checks(df), convergence_table(df)
    passed, counts = int((~checks["fails"].map(bool)).sum()), cl.tier_counts(df)
    low, high = cl.CLAIM_SETTINGS[cl.GATE_RATIO_BAND]
    return "\n".join([
        "## Convergence of the trained models", "",
        "Measured against the exact score with x ~ p_t (fpbench/core/convergence.py): the score ratio "
        f"E[s_θ·s*]/E|s*|² (0 for the trivial log-FP solution u = 2t + c) at t ≥ {LATE_FRACTION:g} T, the relative "
        "score error "
        "E|s_θ − s*|²/E|s*|² averaged over t = (0.001 ... 1) T, beside the same numbers for the authors' published "
        "model of the same target and w_R (fpbench/analysis/authors_levels.py, `fpbench reference levels`); the "
        "shares of samples inside the grid; the relative change of the median loss over the last 20% of training "
        f"(reported, not gated). The gate: ratio within [{low:g}, {high:g}], error at most "
        f"{cl.CLAIM_SETTINGS[cl.GATE_ERROR_FACTOR]:g}x the authors', ODE and SDE shares inside the grid at least "
        f"p0's minus {cl.CLAIM_SETTINGS[cl.GATE_GRID_LOSS]:g} (the *trained* tier). The *authors' quality* tier "
        f"asks the same with the error at most {cl.CLAIM_SETTINGS[cl.QUALITY_ERROR_FACTOR]:g}x the authors' and, at "
        f"w_R > 0, R̃ at most {cl.CLAIM_SETTINGS[cl.QUALITY_RESIDUAL_FACTOR]:g}x theirs. The error over t ≤ "
        f"{EARLY_FRACTION:g} T, where the ODE's quality is decided, is reported beside the authors' (not gated).", "",
        f"**{passed} of {len(checks)} models pass the gate** (trained tier); "
        f"{counts[cl.QUALITY_TIER]} reach {cl.QUALITY_TIER}.", "",
        table.to_markdown(index=False, floatfmt=".3g"), ""])


def calibration_section(cal: pd.DataFrame, figure: Path | None) -> str:
    if cal.empty:
        return ""
    table = cal.copy()
    for col in ("rate under null, 95% CI", "PASS on violating, 95% CI", "power, 95% CI"):
        table[col] = table[col].map(lambda ci: f"[{ci[0]:.3f}, {ci[1]:.3f}]")
    computed, alpha = cal[cal["reps"] > 0], cl.CLAIM_SETTINGS[cl.ALPHA]
    ok = (computed["rate under null, 95% CI"].map(lambda ci: ci[0]) <= alpha).all() and not computed.empty
    rejects = (computed["PASS on violating, 95% CI"].map(lambda ci: ci[0]) <= alpha).all() and not computed.empty
    lines = ["## Calibration of the claim tests", "",
             "Each test on synthetic data built from this run (fpbench/analysis/claims.py, `calibration`): *null* "
             "data with no effect (labels shuffled within blocks, or values redrawn from the noise alone) give the "
             f"rate of a wrong verdict, which must be at most α = {alpha}; *violating* data, in which the claim is "
             "false (a reversed trend, no improvement, an effect just below the threshold, a gap of the paper's size), "
             "are the negative control: their PASS rate must be at most α too, or the test could not tell the claim "
             "from its negation; data with the paper's effect planted at the noise measured here give the power. "
             "The decision rule is the one of fpbench/analysis/stats.py: PASS on the point estimate (p ≤ α and the "
             "effect at least the needed size), FAIL on the interval (a significant opposite effect, or an interval "
             "below the needed size); the rates of all three verdicts under each kind of data are its operating "
             "characteristics. Intervals are exact binomial (Clopper-Pearson). H1 and H2 are deterministic checks "
             "(no sampling noise) and have no calibration.", "",
             f"False-positive rates consistent with ≤ α for every test: **{'yes' if ok else 'no'}**. Negative controls "
             f"rejected (PASS rate on violating data consistent with ≤ α) for every test: "
             f"**{'yes' if rejects else 'no'}**.", "",
             *_family_lines(cal.attrs.get("family", {})),
             table.to_markdown(index=False, floatfmt=".3f"), ""]
    if figure is not None:
        lines += [f"![calibration](figures/{figure.name})", ""]
    return "\n".join(lines)


def _family_lines(family: dict) -> list[str]:
    if not family:
        return []
    ci = lambda k: f"[{family[k + '_ci'][0]:.3f}, {family[k + '_ci'][1]:.3f}]"  # noqa: E731
    return [f"Family-wise: under the global null (every claim's null data at once, {family['reps']} sets, "
            f"{family['claims']} claims whose wrong verdict is a PASS), at least one false PASS in "
            f"**{family['raw']:.3f}** {ci('raw')} of the sets with raw p-values and **{family['holm']:.3f}** "
            f"{ci('holm')} with Holm's adjustment (target ≤ α = {cl.CLAIM_SETTINGS[cl.ALPHA]}).", ""]


def why_section(df: pd.DataFrame, outcomes: list[cl.ClaimOutcome]) -> str:
    """For claims about trained models that FAIL: the per-w_R diagnostics of the collapse toward u = c(t),
    so a reader can see whether any of its signs remain in models that passed the convergence gate."""
    failed = [o.claim.key for o in outcomes if o.verdict == FAIL and o.claim.key in cl.TRAINED_CLAIMS]
    if not failed or "prior_score_ratio" not in df:
        return ""
    per_w = df.groupby("param_w_r").agg(prior=("prior_score_ratio", "mean"), ode_in=("inside_grid_ode", "mean"),
                                        sde_in=("inside_grid_sde", "mean"), residual=("log_fp_residual", "mean"),
                                        gap=("w2_ode_sde.value", "mean"))
    per_w.index.name = "w_R"
    per_w.columns = ["score at T / prior's", "ODE samples in grid", "SDE samples in grid", "R~", "W2²(ODE, SDE)"]
    return "\n".join([
        f"## {', '.join(failed)}: FAIL on models that pass the convergence gate", "",
        "These claims are decided only on models that pass the gate (the convergence section), so the FAIL is a "
        "result about converged models, not the collapse of a short run. The log-FP equation has the exact "
        "solution u = c(t) (zero score, zero residual), toward which a short run with a weighted residual is "
        "pulled; the means below (over targets and seeds) show whether any sign of it remains: the score at "
        "t = T projected on the prior's score (1: the prior's; 0: that trivial solution), the share of samples "
        "inside the grid, R~ and the ODE-SDE gap per w_R.", "",
        per_w.to_markdown(floatfmt=".4g"), ""])


# --- figures ---------------------------------------------------------------------------------------

def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def calibration_figure(cal: pd.DataFrame, path: Path) -> Path | None:
    if cal.empty:
        return None
    import seaborn as sns

    plt = pyplot()
    long = pd.concat([cal.assign(kind="wrong verdict on null data", rate=cal["rate under null"]),
                      cal.assign(kind="PASS on violating data", rate=cal["PASS rate on violating data"]),
                      cal.assign(kind="power on the planted effect", rate=cal["power"])], ignore_index=True)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    sns.barplot(data=long, x="claim", y="rate", hue="kind", ax=ax)
    ax.axhline(cl.CLAIM_SETTINGS[cl.ALPHA], color="k", ls="--", lw=1, label=f"α = {cl.CLAIM_SETTINGS[cl.ALPHA]}")
    for i, reps in enumerate(cal["reps"]):  # a test the data cannot compute has no bars: say so
        if reps == 0:
            ax.text(i, 0.5, "not computable\non these data", ha="center", va="center", fontsize=6, rotation=90)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Claim tests on synthetic data ({int(cal['reps'].max())} sets each)", fontsize=9)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def fig3(records: list[dict], store: Store, path: Path, seed: int = 0) -> Path | None:
    """Fig. 3: p_SDE and p_ODE histograms (64 x 64 nodes) per w_R (rows), two columns per target."""
    chosen = {(r["config"]["target"]["name"], r["config"]["method"]["params"].get("w_r")): r for r in records
              if r["config"]["seed"] == seed}
    if not chosen:
        return None
    targets = [t for t in ("blob", "circles2", "checker") if any(k[0] == t for k in chosen)]
    levels = sorted({k[1] for k in chosen})
    plt = pyplot()
    fig, axes = plt.subplots(len(levels), 2 * len(targets), figsize=(2 * 2 * len(targets) + 1, 2 * len(levels) + 0.6),
                             squeeze=False)
    hists = {key: store.samples(rec["key"]) for key, rec in chosen.items()}
    shares = [h[name] / max(h[name].sum(), 1) for h in hists.values() if h is not None for name in ("sde", "ode")]
    # one colour scale for every panel: the median of the panels' largest shares, so that a panel with almost
    # no samples inside the grid (a few nodes at a large share) saturates instead of washing out the others
    vmax = float(np.median([s.max() for s in shares])) if shares else 1.0
    image = None
    for i, w in enumerate(levels):
        for j, target in enumerate(targets):
            hist = hists.get((target, w))
            for k, name in enumerate(("sde", "ode")):
                ax = axes[i, 2 * j + k]
                ax.set_xticks([])
                ax.set_yticks([])
                if hist is not None:
                    n = int(np.sqrt(hist[name].size))
                    share = hist[name] / max(hist[name].sum(), 1)
                    image = ax.imshow(share.reshape(n, n).T, origin="lower", cmap="viridis", vmin=0, vmax=vmax)
                    if hist[name].sum() == 0:
                        ax.text(0.5, 0.5, "no samples\ninside the grid", ha="center", va="center", fontsize=7,
                                color="white", transform=ax.transAxes)
                else:
                    ax.text(0.5, 0.5, "not run", ha="center", va="center", fontsize=7, transform=ax.transAxes)
                if i == 0:
                    ax.set_title(f"{target} p_{name.upper()}", fontsize=8)
                if j == 0 and k == 0:
                    ax.set_ylabel(f"w_R = {w:g}", fontsize=8)
    fig.suptitle(f"Fig. 3: p_SDE and p_ODE on the paper's 64 x 64 grid (share of samples per node; seed {seed})",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.93, 0.97))
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01, extend="max",
                     label="share of samples per node")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def fig1(curl_records: list[dict], store: Store, path: Path, target: str = "circles2") -> Path | None:
    """Fig. 1: SDE samples of a free score model and |curl s_theta(x, t)| on a grid at t = 0.01, both
    stored by the pipeline (the samples, the record's ``curl_field``); None where the store lacks them
    (a record written before fpbench stored the field, 2026-12-05, or samples damaged since the run)."""
    recs = [r for r in curl_records if r["config"]["target"]["name"] == target and r["config"]["seed"] == 0]
    field = recs[0]["metrics"].get("curl_field") if recs else None
    stored = store.samples(recs[0]["key"]) if recs else None
    if field is None or stored is None:
        return None
    low, high = field["box"]
    curl, t_value = np.asarray(field["values"]), field["t"]
    points = stored["sde_points"]
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4))
    ax1.scatter(points[:, 0], points[:, 1], s=1, alpha=0.5)
    ax1.set(xlim=(low, high), ylim=(low, high), title=f"(a) samples, free score model ({target})", aspect="equal")
    im = ax2.imshow(curl.T, origin="lower", extent=(low, high, low, high), cmap="magma")
    ax2.set_title(f"(b) |curl s_theta(x, {t_value})|")
    fig.colorbar(im, ax=ax2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
