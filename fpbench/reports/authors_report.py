"""reports/reference-claims.md: the paper's claims about trained models decided on the authors' 12 published models,
re-sampled by fpbench (``fpbench.analysis.published``) and tested with the same tests, gates and calibration
as fpbench's own trained models. Every number comes from the results store."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pandas as pd

from .. import __version__
from ..analysis import claims as cl
from ..analysis.paper_values import TABLE_TITLES
from ..analysis.published import MODELS, SCALE, authors_cases, whole_seeds
from ..core.errors import FpbenchError
from ..run.config import AUTHORS_RESAMPLING
from . import claims_report as cr
from .suite_report import TABLES, diagnostics_frame, settings_section, table_frame, table_markdown

COMMAND = "fpbench reference claims"
UNITS = ("these are 12 fixed checkpoints, each sampled by several sampling seeds: the trend and paired tests read "
         "the seeds as replicate measurements of those checkpoints, and the correlation and rate tests (C4, C5, T1) "
         "average them per checkpoint (12 units). Every verdict is a statement about these 12 checkpoints, not "
         "about the training method that made them.")


def seeds_line(df: pd.DataFrame) -> str:
    """How many sampling seeds each model has, and what that means for the noise the tests assume."""
    per_model = cl.seeds_per_model(df)
    lines = f"- **Sampling seeds finished**: {per_model.min()}" + (
        f" to {per_model.max()}" if per_model.max() != per_model.min() else "") + " per model"
    if per_model.max() < 2:
        return (lines + ". With one seed the seed-to-seed noise is not measured: the trend tests' blocks are the "
                f"targets alone, and the calibration plants its effect at fpbench's assumed noise "
                f"(sd of log values {cl.seed_noise(df, 'w2_ode_sde.value'):g}), not a measured one.")
    return lines + "; the calibration plants its effect at the measured seed-to-seed noise."


def structural_lines(df: pd.DataFrame) -> list[str]:
    """Why C5 and T1 cannot be decided on the published models however many sampling seeds are run: one
    checkpoint per (target, w_R) cell, and few models per target whose gap stands out of the exact score's."""
    units = cl.checkpoint_units(cl.with_checkpoints(df))
    per_cell = units.groupby(["target", "param_w_r"]).size().max()
    usable = cl.theorem1_points(units).groupby("target").size()  # of the units: claims.theorem1_units
    usable = usable.reindex(sorted(units["target"].unique()), fill_value=0)
    counts = ", ".join(f"{target} {n}" for target, n in usable.items())
    factor = cl.CLAIM_SETTINGS[cl.LAB_USABLE_FACTOR]
    return [f"- **Not decidable on these models at any number of sampling seeds**: C5 correlates R̃ with the gap "
            f"within (target, w_R) cells across independently trained models, and the authors published "
            f"{per_cell} checkpoint per cell; T1 fits the gap's rate over the models of a target whose W2² is at "
            f"least {factor:g}x the exact score's, at least 3 per target, and these have {counts}. Both are "
            "tested on fpbench's own models (several training seeds per cell), T1's rate also on the lab's planted "
            "errors (reports/lab.md, L1)."]


def _left_out_lines(left_out: dict[int, int]) -> list[str]:
    """The sampling seeds left out of the claims until all their models are finished."""
    if not left_out:
        return []
    seeds = ", ".join(f"seed {seed} ({n} of {MODELS} finished)" for seed, n in sorted(left_out.items()))
    return [f"Decided on whole sampling seeds only: {seeds} left out until every model of it is finished (the "
            "same command resumes the run).", ""]


def write_authors_report(df: pd.DataFrame, records: list[dict], missing: list[str], out: Path, where: str,
                         calibration_reps: int = 1000, seeds: int | None = None) -> Path:
    """Write the report from the published models' finished cases (``published.authors_results``)."""
    finished = len(df)
    df, records, left_out = whole_seeds(df, records)
    if df.empty:
        raise FpbenchError(f"no sampling seed with all {MODELS} of the authors' models finished under {where} "
                           f"({finished} case(s) finished); run `{COMMAND}` first")
    outcomes = cl.trained_claims(df, fixed_checkpoints=True)
    cal = cl.calibration(df, reps=calibration_reps, fixed_checkpoints=True)
    (out.parent / "figures").mkdir(parents=True, exist_ok=True)
    cal_fig = cr.calibration_figure(cal, out.parent / "figures" / f"{out.stem}-calibration.png")
    case = authors_cases(seeds)[0]
    n, nfe = case.config["sample"]["n"], case.config["sample"]["nfe"]
    lines = ["# The paper's claims decided on the authors' published models", "",
             f"Generated {datetime.date.today().isoformat()} by fpbench {__version__} (`{COMMAND}`) from "
             f"{len(df)} finished case(s) of {finished + len(missing)} under `{where}`"
             + (f" ({finished} finished in all)" if finished > len(df) else "") + f"; torch {records[0]['torch']}.",
             "",
             *_left_out_lines(left_out),
             "The authors' 12 checkpoints (../shared/paper/reference/, loaded without running their code) are "
             "measured as cases of the paper suite at its `paper` scale: the authors' own sampler (Euler and "
             f"Euler-Maruyama on their refined grid, nfe = {nfe}), grid and distances, with no training, and "
             f"{n:,} fresh samples per sampler per sampling seed (the published tables used 3,000,000; "
             f"{COMMAND} sets these in `fpbench/run/config.py`, AUTHORS_RESAMPLING). Each seed is an independent "
             "set of samples, so the seed-to-seed spread measures the sampling noise. The claims, their gates "
             "(the convergence gate among them: its first check on models trained to the paper's budget) and "
             "their calibration are fpbench's own (fpbench/analysis/claims.py), as in reports/paper-*.md, where "
             "these verdicts also stand beside fpbench's own models'.", ""]
    if missing:
        lines += [f"**Not finished ({len(missing)}):** " + ", ".join(missing), ""]
    lines += ["## Summary", "", *cr.tier_lines(df), *cr.verdict_lines(outcomes), *cr.convergence_lines(df),
              *structural_lines(df), seeds_line(df), f"- **Unit of replication**: {UNITS}", ""]
    lines += ["## Tables 1-3 from the re-sampled models", "",
              "Per cell: the mean over sampling seeds [95% Student t interval], the noise floor at this n (two "
              "independent draws of p0) and the paper's value (3,000,000 samples, whose own floor is about 0.0005: "
              "reports/paper-intervals.md).", ""]
    for table in TABLES:
        lines += [f"### {TABLE_TITLES[table]}", "", table_markdown(table_frame(df, table)), ""]
    how = (f"`{COMMAND}` decides the claims about trained models on these models (C6 and fpbench's checks are "
           "about free score networks and the exact score: reports/paper-*.md); the family for Holm's adjustment is "
           f"these. {UNITS}")
    lines += [cr.claims_section(outcomes, SCALE, how=how), cr.convergence_section(df),
              cr.calibration_section(cal, cal_fig)]
    seconds = sum(r["sample_seconds"] for r in records)
    lines += ["## The models", "", diagnostics_frame(df).to_markdown(floatfmt=".4g"), "",
              f"Sampling time (measured, all cases): {seconds:.0f} s on {sorted({r['device'] for r in records})}.", ""]
    lines += [f"Resampling settings (AUTHORS_RESAMPLING): `{json.dumps(AUTHORS_RESAMPLING)}`. The train table "
              "below is the authors' protocol, listed for reference: fpbench did not train these models; it reads "
              "their checkpoints (`train.sha256` in each record names the file).", "", settings_section(case)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return out
