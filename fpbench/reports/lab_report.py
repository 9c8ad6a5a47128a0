"""``reports/lab.md``: the error-injection lab (``fpbench.run.lab``) and its claims L1-L4
(``fpbench.analysis.lab_claims``), with figures. Every number is read from the lab's records; every
W2^2 is shown with its noise floor and the exact score's discretisation bounds."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis import lab_claims as lc
from ..analysis.claims import CLAIM_SETTINGS
from .claims_report import claims_table


def _pm(value: float, sd: float) -> str:
    return f"{value:.4g} ± {1.96 * sd:.2g}"


def oracle_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per target: the exact score's three W2^2 (same random numbers as every planted model), the floor
    and the exact score's discretisation bounds."""
    ex = df[df["family"] == "exact"]
    return pd.DataFrame({"target": ex["target"], "floor (mean, sd)": [f"{m:.3g}, {s:.2g}" for m, s in
                                                                     zip(ex["floor_mean"], ex["floor_sd"])],
                         "disc ODE": ex["disc_ode"].map("{:.3g}".format),
                         "disc SDE": ex["disc_sde"].map("{:.3g}".format),
                         **{f"exact {d}": [_pm(v, s) for v, s in zip(ex[d], ex[f"{d}_sd"])] for d in lc.DISTANCES}})


def l1_table(df: pd.DataFrame) -> pd.DataFrame:
    g = df[df["family"] == "gradient"].sort_values(["target", "shape", "eps"])
    usable, resolved = set(lc.l1_points(df).index), set(lc.l1_points(df, fitted_only=False).index)
    return pd.DataFrame({
        "target": g["target"], "shape": g["shape"], "eps": g["eps"],
        "R̃ (eq. 20)": g["log_fp_residual"].map("{:.3g}".format),
        "R^s (eq. 32)": g["score_fp_residual"].map("{:.3g}".format),
        "W2²(ODE, SDE) ± 95%": [_pm(v, s) for v, s in zip(g["w2_ode_sde"], g["w2_ode_sde_sd"])],
        "exact score's W2²(ODE, SDE)": g["exact_w2_ode_sde"].map("{:.3g}".format),
        "floor": g["floor_mean"].map("{:.3g}".format),
        "disc ODE / SDE (model)": [f"{a:.2g} / {b:.2g}" for a, b in zip(g["disc_ode"], g["disc_sde"])],
        "disc ODE / SDE (exact score)": _exact_disc(g),
        "in the fit": ["yes" if i in usable else "resolved" if i in resolved else "no (below the resolution)"
                       for i in g.index]})


def l2_table(df: pd.DataFrame) -> pd.DataFrame:
    s = df[df["family"].isin(["solenoidal", "twin"])].sort_values(["target", "eps", "family"])
    out = {"target": s["target"], "eps": s["eps"], "error": s["family"],
           "E|s − s*|² (p-weighted)": s["score_error"].map("{:.3g}".format),
           "mean |curl|": s["curl_mean"].map("{:.2g}".format),
           "R^s": s["score_fp_residual"].map("{:.3g}".format)}
    for d in lc.DISTANCES:
        allow = lc.allowance(s, d)
        out[f"{d} (allowance)"] = [f"{_pm(v, sd)} ({a:.3g})" for v, sd, a in zip(s[d], s[f"{d}_sd"], allow)]
    out["floor"] = s["floor_mean"].map("{:.3g}".format)
    out["disc ODE / SDE (exact score)"] = _exact_disc(s)
    return pd.DataFrame(out)


def _exact_disc(rows: pd.DataFrame) -> list[str]:
    return [f"{a:.2g} / {b:.2g}" for a, b in zip(rows["exact_disc_ode"], rows["exact_disc_sde"])]


def l3_table(df: pd.DataFrame) -> pd.DataFrame:
    p = lc.pulse_excess(df)
    return pd.DataFrame({"target": p["target"], "pulse at t_c": p["position"],
                         "W2²(ODE, p0) ± 95%": [_pm(v, s) for v, s in zip(p["w2_ode_p0"], p["w2_ode_p0_sd"])],
                         "W2²(SDE, p0) ± 95%": [_pm(v, s) for v, s in zip(p["w2_sde_p0"], p["w2_sde_p0_sd"])],
                         "ODE excess": p["ode_excess"].map("{:.3g}".format),
                         "SDE excess": p["sde_excess"].map("{:.3g}".format),
                         "floor": p["floor_mean"].map("{:.3g}".format),
                         "disc ODE / SDE (model)": [f"{a:.2g} / {b:.2g}"
                                                    for a, b in zip(p["disc_ode"], p["disc_sde"])],
                         "disc ODE / SDE (exact score)": _exact_disc(p)})


def figure_l1(df: pd.DataFrame, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    points = lc.l1_points(df, fitted_only=False)  # every resolved gap; the fit uses the smallest eps of each
    if points.empty:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    sns.scatterplot(data=points, x="log_fp_residual", y="w2_excess", hue="target", style="shape", s=70, ax=ax)
    x = np.geomspace(points["log_fp_residual"].min(), points["log_fp_residual"].max(), 20)
    anchor_x, anchor_y = points["log_fp_residual"].median(), points["w2_excess"].median()
    for a, ls in ((0.5, "--"), (1.0, ":")):
        ax.plot(x, anchor_y * (x / anchor_x) ** a, "k" + ls, lw=1, label=f"slope {a:g}")
    ax.set(xscale="log", yscale="log", xlabel="R̃ (eq. 20)", ylabel="W2(p_ODE, p_SDE) excess over the exact score")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def figure_l3(df: pd.DataFrame, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    p = lc.pulse_excess(df)
    if p.empty:
        return None
    long = p.melt(id_vars=["target", "position"], value_vars=["w2_ode_p0", "w2_sde_p0"], var_name="sampler",
                  value_name="W2²(·, p0)")
    long["sampler"] = long["sampler"].map({"w2_ode_p0": "ODE", "w2_sde_p0": "SDE"})
    grid = sns.relplot(data=long, x="position", y="W2²(·, p0)", hue="sampler", col="target", kind="line",
                       marker="o", height=3.2, aspect=1.1)
    for ax, (_target, grp) in zip(grid.axes.flat, p.groupby("target", sort=False)):
        ax.axhline(grp["floor_mean"].iloc[0], color="grey", lw=0.8, ls=":")
    grid.set(xscale="log", yscale="log", xlabel="pulse position t_c (late ← → early in generation)")
    grid.savefig(path, dpi=110)
    return path


def figure_l2(df: pd.DataFrame, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    s = df[df["family"].isin(["solenoidal", "twin"])].copy()
    if s.empty:
        return None
    s["largest W2²"] = s[list(lc.DISTANCES)].max(axis=1)
    grid = sns.relplot(data=s, x="eps", y="largest W2²", hue="family", col="target", kind="line", marker="o",
                       height=3.2, aspect=1.1)
    for ax, (_, grp) in zip(grid.axes.flat, s.groupby("target", sort=False)):
        ax.axhline(grp["floor_mean"].iloc[0], color="grey", lw=0.8, ls=":")
    grid.set(xscale="log", yscale="log", xlabel="eps")
    grid.savefig(path, dpi=110)
    return path


def calibration_lines(df: pd.DataFrame, lab: dict, reps: int) -> list[str]:
    """The lab tests' operating characteristics on synthetic frames (``lab_claims.lab_calibration``)."""
    if reps <= 0:
        return ["## Calibration of the lab's tests", "", "Not computed in this rendering (`--calibration-reps 0`).",
                ""]
    pulse = lab["families"]["pulse"]
    cal = lc.lab_calibration(df, pulse["late"], pulse["early"], reps=reps)
    table = cal.copy()
    for col in ("rate under null, 95% CI", "PASS on violating, 95% CI", "power, 95% CI"):
        table[col] = table[col].map(lambda ci: f"[{ci[0]:.3f}, {ci[1]:.3f}]" if np.isfinite(ci[0]) else "—")
    table = table.astype(object).where(table.notna(), "—")
    alpha = CLAIM_SETTINGS[lc.ALPHA]
    return ["## Calibration of the lab's tests", "",
            "Each test on synthetic lab frames built from this run's (fpbench/analysis/lab_claims.py, "
            "`lab_calibration`): the planted W2² replaced by a known truth and redrawn with each estimate's "
            "measured bootstrap sd. *Null* data sit at the claim's boundary (an exponent or a spread; the tests "
            "of L1, L1-lin, L1-sqrt and L4-suff test against the boundary itself; for L2 the solenoidal errors "
            "above their allowance by the critical z of the test's own noise) or at no effect (L3, whose paired "
            "tests PASS only at the needed size; L4 with R^s shuffled between its two groups); the rate of a "
            f"wrong PASS must be at most α = {alpha}. "
            "*Violating* data (the negative control) are well on the claim's false side: their PASS rate must be "
            "at most α too. *Planted* data, well inside the claim, give the power. Intervals are exact binomial "
            f"(Clopper-Pearson), {reps} synthetic frames per row.", "",
            table.to_markdown(index=False, floatfmt=".3f"), ""]


def write_report(df: pd.DataFrame, lab: dict, out: Path, command: str, seconds: float,
                 calibration_reps: int = 100) -> Path:
    out = Path(out)
    figures = out.parent / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    stem = f"lab-{lab['scale']}"
    pulse = lab["families"]["pulse"]
    outcomes = lc.evaluate_lab(df, pulse["late"], pulse["early"])
    by_key = {o.claim.key: o for o in outcomes}
    figs = {"l1": figure_l1(df, figures / f"{stem}-l1.png"), "l2": figure_l2(df, figures / f"{stem}-l2.png"),
            "l3": figure_l3(df, figures / f"{stem}-l3.png")}
    rel = {k: (f"figures/{v.name}" if v else None) for k, v in figs.items()}
    slopes = lc.local_slopes(df)
    cross = lc.crossovers(df)
    l1 = by_key["L1"].result
    lines = [
        "# The error-injection lab: exact scores with planted errors", "",
        f"Regenerate with `{command}` (scale `{lab['scale']}`: {lab['settings'].get('about', '')}). "
        f"Generated {datetime.date.today().isoformat()}; the {len(df)} planted models took "
        f"{df['seconds'].sum() / 60:.1f} CPU-minutes to measure (this run: {seconds / 60:.1f} min, the rest read "
        "from the store).", "",
        "Every target's exact score s* is known, so an error of known form and size can be planted in it: no "
        "training noise at all. Models (fpbench/core/planted.py): **gradient** errors φ = log p + ε b(t) ψ0(x) "
        "(a potential model, so R̃ of eq. 20 is computed as for a trained network), **p-solenoidal** errors "
        "s* + ε J∇p (div(p J∇p) = 0: neither sampler's marginals move in continuous time), their **gradient "
        "twins** s* + ε∇p (the same size at every (x, t)), and **time pulses** ε b(t) ∇ψ0 with b of unit mass "
        "at a position t_c. All models of a target share their random numbers (prior points, Brownian "
        "increments, the p0 sample): a planted model's *excess* is its W2² minus the exact score's.", "",
        "## Summary", "",
        claims_table(outcomes).to_markdown(index=False), "",
    ]
    if l1 is not None:
        lines += [f"**Theorem 1's scaling (L1).** The measured exponent in W2(p_ODE, p_SDE) ∝ R̃^a is "
                  f"**a = {l1.statistic:.3f}, 95% interval [{l1.ci_low + 1:.3f}, {l1.ci_high + 1:.3f}]** "
                  f"({l1.n} planted gaps). R̃ is a mean *square* (eq. 20), so a first-order effect of an error of "
                  "size ε gives R̃ ∝ ε² and W2 ∝ ε, i.e. a = 1/2; the bound W2 < Cδ whenever R̃ < δ with C "
                  "independent of δ needs a ≥ 1.", ""]
    lines += ["Parts and details:", ""]
    lines += [f"- **{o.claim.key}**: {o.result.detail}" for o in outcomes if o.result is not None and o.result.detail]
    lines += ["", *calibration_lines(df, lab, calibration_reps)]
    lines += ["", "## The exact score through the same samplers (the oracle)", "",
              "Floor: the grid W2² between independent draws of p0 of the same size (mean, sd over replicates). "
              "disc: coupling bounds on the discretisation part of W2² (ODE against an adaptive DOP853 solution, "
              "SDE against steps of h/4 on the same Brownian path).", "",
              oracle_table(df).to_markdown(index=False), "",
              "## L1: W2 against R̃ for gradient errors", "",
              f"A gap is resolved when its W2² is at least {CLAIM_SETTINGS[lc.LAB_USABLE_FACTOR]:g}× the exact "
              "score's (the same random numbers: floor + discretisation as measured); the fit takes the "
              f"{CLAIM_SETTINGS[lc.LAB_FIT_POINTS]} smallest resolved ε of each curve (the claim is about ε → 0; "
              "the local slopes show the rest). W2 excess = "
              "sqrt(W2² − exact W2²). The exponent is the least-squares slope on log-log axes with one intercept "
              "per curve (target × shape); its interval redraws every W2² from its bootstrap distribution.", ""]
    if figs["l1"]:
        lines += [f"![W2 against R~]({rel['l1']})", ""]
    if not slopes.empty:
        lines += ["Local slopes d log W2 / d log R̃ between consecutive ε (the exponent as ε shrinks):", "",
                  slopes.to_markdown(index=False, floatfmt=".3f"), ""]
    lines += [l1_table(df).to_markdown(index=False), "",
              "## L2 and L4: p-solenoidal errors and their gradient twins", "",
              "Allowance: floor + the model's own discretisation bounds ((√disc_ODE + √disc_SDE)² for the gap), as "
              "for check H3. The score error is E|s − s*|² with t ~ U(t0, T), x ~ p_t (the p-weighted L2 size; "
              "equal for a solenoidal error and its twin by construction).", ""]
    if figs["l2"]:
        lines += [f"![solenoidal against twin]({rel['l2']})", ""]
    lines += [l2_table(df).to_markdown(index=False), "",
              "## L3: where in generation an error hurts", "",
              "Crossover (log(SDE excess / ODE excess) changing sign, interpolated in log t_c): " +
              ", ".join(f"{t}: {c:.3g}" if np.isfinite(c) else f"{t}: none" for t, c in cross.items()) + ".", ""]
    if figs["l3"]:
        lines += [f"![distances against pulse position]({rel['l3']})", ""]
    lines += [l3_table(df).to_markdown(index=False), "",
              "## Settings", "", "```json", json.dumps({"sde": lab["sde"], "targets": lab["targets"],
                                                        "families": lab["families"], "scale": lab["settings"]},
                                                       indent=1), "```", ""]
    out.write_text("\n".join(lines))
    return out
