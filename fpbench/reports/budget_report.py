"""``reports/budget.md``: the budget study (``fpbench.run.budget``) read back, every number from its
records: per schedule the cost, the convergence gate's verdict on each of the 12 models, and the
score-ratio and score-error trajectories over training."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pandas as pd

from ..analysis import claims as cl
from ..core.convergence import LATE_FRACTION
from ..core.errors import FpbenchError
from ..run.budget import PROBE_EVERY, PROBE_POINTS, SAMPLE, SCHEDULES
from ..run.schema import budget_member_column, budget_record_problem, typed
from ..run.store import read_json
from .claims_report import convergence_table

LATE_RATIO = f"smallest score ratio, t ≥ {LATE_FRACTION:g} T"
ERROR_RATIO = "relative score error / authors'"


def load_records(study_dir: Path) -> list[dict]:
    """Finished schedules under ``study_dir``, in ``SCHEDULES`` order; a record that cannot be read as one
    (``schema.budget_record_problem``) is an error naming its file."""
    records = []
    for name in SCHEDULES:
        path = Path(study_dir) / f"{name}.json"
        if path.exists():
            record = read_json(path)
            if problem := budget_record_problem(record):
                raise FpbenchError(f"budget record {path} {problem} (fpbench/run/schema.py, BUDGET_RECORD_KEYS): "
                                   "restore it (git checkout) or move it away to train that schedule again")
            records.append(record)
    return records


def load_in_progress(study_dir: Path) -> list[dict]:
    """Schedules begun but not finished (no record yet): their probes so far (``<name>.probes.jsonl``),
    as records with ``trajectories`` and the step and training seconds they reached."""
    records = []
    for name in SCHEDULES:
        probes = Path(study_dir) / f"{name}.probes.jsonl"
        if (Path(study_dir) / f"{name}.json").exists() or not probes.exists():
            continue
        lines = [json.loads(line) for line in probes.read_text().splitlines() if line.strip()]
        if lines:
            labels = lines[-1]["profiles"]
            records.append({"name": name, "schedule": SCHEDULES[name], "step": lines[-1]["iteration"],
                            "train_seconds": lines[-1]["elapsed_s"], "threads": lines[-1].get("threads"),
                            "trajectories": {label: [{"iteration": line["iteration"], **line["profiles"][label]}
                                                     for line in lines] for label in labels}})
    return records


def in_progress_section(records: list[dict], study_dir: Path) -> list[str]:
    """Each unfinished schedule's latest probe, judged by the convergence gate's score-ratio and
    score-error checks (the shares inside the grid are measured only when a schedule ends)."""
    lines = []
    for rec in records:
        s, resume = rec["schedule"], budget_command([rec["name"]], rec.get("threads"), study_dir)
        latest = pd.DataFrame([{"target": target, "param_w_r": w_r, "seed": 0,
                                "convergence.ratio_min_late": points[-1]["ratio_min_late"],
                                "convergence.ratio_max_late": points[-1]["ratio_max_late"],
                                "convergence.rel_error": points[-1]["rel_error"]}
                               for (target, w_r), points in _by_model(rec).items()])
        checks = cl.convergence_checks(latest)
        frame = pd.DataFrame({
            "target": checks["target"], "w_R": checks["w_r"],
            f"score ratio, t ≥ {LATE_FRACTION:g} T (min-max)": [f"{a:.3f}-{b:.3f}" for a, b in zip(
                latest["convergence.ratio_min_late"], latest["convergence.ratio_max_late"])],
            "rel. score error": checks["rel_error"],
            "ratio to authors'": checks["rel_error"] / checks["authors_rel_error"],
            "ratio and error parts of the gate": ["pass" if not f else "FAIL" for f in checks["fails"]],
            "within 3x the authors' error": ["yes" if not f else "no" for f in cl.convergence_checks(
                latest, cl.QUALITY_TIER)["fails"]]})
        frame = frame.sort_values(["target", "w_R"])
        lines += [f"### {rec['name']} (in progress: step {rec['step']:,} of {s['iterations']:,}, "
                  f"{rec['train_seconds']:,.0f} s of training so far)", "",
                  f"Lr stages {' / '.join(f'{lr:g} x {f:g}' for lr, f in s['lr_stages'])}, DSM batch "
                  f"{s['dsm_batch']}, {s['residual_points']} residual points. The latest probe "
                  f"({PROBE_POINTS:,} points per t; the shares inside the grid are measured when the schedule ends); "
                  f"`{resume}` resumes it from its checkpoint.", "",
                  frame.to_markdown(index=False, floatfmt=".3g"), ""]
    return lines


def _by_model(record: dict) -> dict[tuple[str, float], list[dict]]:
    """A record's probe trajectories keyed by (target, w_R), parsed from the case labels."""
    return {(label.split("/")[0], float(label.split("w_r=")[1].split(")")[0])): points
            for label, points in record["trajectories"].items()}


def members_frame(record: dict) -> pd.DataFrame:
    """One row per trained member in the pipeline's results columns (``schema.budget_member_column``):
    what the convergence gate reads, as it reads a suite's results."""
    trained = {label: m for label, m in record["members"].items() if "failed" not in m}
    rows = [{**{column: value for key, value in m.items() if (column := budget_member_column(key))},
             "param_w_r": m["w_r"], "seed": 0} for m in trained.values()]
    return typed(pd.DataFrame(rows)).assign(label=list(trained))  # label: the case's, which FIELDS does not hold


def trajectories_frame(records: list[dict]) -> pd.DataFrame:
    rows = []
    for rec in records:
        for (target, w_r), points in _by_model(rec).items():
            level = cl.reference_error(target, w_r)
            rows += [{"schedule": rec["name"], "target": target, "w_R": w_r, "step": p["iteration"],
                      LATE_RATIO: p["ratio_min_late"],
                      ERROR_RATIO: p["rel_error"] / level} for p in points]
    return pd.DataFrame(rows)


def summary_frame(records: list[dict]) -> pd.DataFrame:
    """One row per finished schedule, counts as numbers (``summary_table`` formats them for the report)."""
    rows = []
    for rec in records:
        members = members_frame(rec)
        checks = cl.convergence_checks(members)
        s = rec["schedule"]
        rows.append({"schedule": rec["name"], "steps": s["iterations"],
                     "lr stages (lr, fraction)": _stages(s),
                     "DSM batch": s["dsm_batch"], "residual points": s["residual_points"],
                     "training s": round(rec["train_seconds"]), "threads": rec["threads"],
                     "first steps shared with": _shared(rec.get("branched_from")),
                     "member-steps/s": round(rec["member_steps_per_second"], 1),
                     "models": len(checks), "passing": _passing(checks),
                     "quality": _passing(cl.convergence_checks(members, cl.QUALITY_TIER)),
                     "residual recorded": "log_fp_residual" in members,
                     "smallest late ratio": checks["ratio_min_late"].min(),
                     "largest error / authors'": (checks["rel_error"] / checks["authors_rel_error"]).max()})
    return pd.DataFrame(rows)


def _passing(checks: pd.DataFrame) -> int:
    return int((~checks["fails"].map(bool)).sum())


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary_frame`` as the report shows it: the counts as "N of M"; where R~ was not measured (records
    before 2026-12-04) the authors'-quality count is of its score-error and grid parts alone, and says so."""
    note = summary["residual recorded"].map({True: "", False: " (score error only: R̃ not in this record)"})
    of = " of " + summary["models"].astype(str)
    table = summary.assign(**{"models passing the gate": summary["passing"].astype(str) + of,
                              cl.QUALITY_TIER: summary["quality"].astype(str) + of + note})
    columns = [c for c in table if c not in ("models", "passing", "quality", "residual recorded")]
    first = columns.index("member-steps/s") + 1
    order = columns[:first] + ["models passing the gate", cl.QUALITY_TIER]
    return table[order + [c for c in columns if c not in order]]


def levers_section(records: list[dict]) -> list[str]:
    """Schedules that differ only in their learning-rate stages, at the same number of steps: per model the
    relative score error of each (over the authors' model's) and how many models the later one improves."""
    lines = []
    for i, a in enumerate(records):
        for b in records[i + 1:]:
            sa, sb = a["schedule"], b["schedule"]
            if {**sa, "lr_stages": None} != {**sb, "lr_stages": None}:
                continue
            ma, mb = members_frame(a).set_index("label"), members_frame(b).set_index("label")
            both = ma.index.intersection(mb.index)
            error_a, error_b = ma.loc[both, "convergence.rel_error"], mb.loc[both, "convergence.rel_error"]
            authors = [cl.reference_error(t, w) for t, w in zip(ma.loc[both, "target"], ma.loc[both, "param_w_r"])]
            ratio = error_b / error_a
            table = pd.DataFrame({"target": ma.loc[both, "target"], "w_R": ma.loc[both, "param_w_r"],
                                  f"{a['name']} error / authors'": error_a / authors,
                                  f"{b['name']} error / authors'": error_b / authors,
                                  f"{b['name']} / {a['name']}": ratio})
            base = table["w_R"] == 0
            lines += [f"### {b['name']} against {a['name']} ({sa['iterations']:,} steps each)", "",
                      f"The same steps, batch and residual points; learning rates {_stages(sb)} against "
                      f"{_stages(sa)}. {b['name']} has the lower relative score error for {int((ratio < 1).sum())} "
                      f"of {len(ratio)} models ({int((ratio[base] < 1).sum())} of {int(base.sum())} DSM baselines, "
                      f"{int((ratio[~base] < 1).sum())} of {int((~base).sum())} at w_R > 0); median ratio "
                      f"{ratio.median():.3g} (baselines {ratio[base].median():.3g}, w_R > 0 "
                      f"{ratio[~base].median():.3g}).", "", table.to_markdown(index=False, floatfmt=".3g"), ""]
    return ["## Levers at equal steps", "", *lines] if lines else []


def _stages(schedule: dict) -> str:
    return " / ".join(f"{lr:g} x {f:g}" for lr, f in schedule["lr_stages"])


def _shared(branch: dict | None) -> str:
    """Which schedule a branched one took its first steps from (their seconds are in its training s)."""
    return "—" if not branch else f"{branch['schedule']} (steps 1-{branch['step']:,})"


def figure(traj: pd.DataFrame, out: Path) -> Path:
    """The frontier: each model's relative score error over the authors' model's against steps, one panel per
    target (columns) and w_R (rows), one line per schedule, with the two tiers' allowances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    data = traj.assign(w_R=traj["w_R"].map(lambda w: f"w_R = {w:g}"))
    grid = sns.relplot(data=data, x="step", y=ERROR_RATIO, hue="schedule", row="w_R", col="target", kind="line",
                       height=2.2, aspect=1.5, linewidth=1.2, facet_kws={"sharey": True, "margin_titles": True})
    factors = {tier: cl.CLAIM_SETTINGS[keys[0]] for tier, keys in cl.TIERS.items()}
    for ax in grid.axes.flat:
        ax.set_yscale("log")
        for tier, factor in factors.items():
            ax.axhline(factor, color="grey", linewidth=0.8, linestyle=":" if tier == cl.QUALITY_TIER else "--")
    grid.set_titles(row_template="{row_name}", col_template="{col_name}")
    grid.set_axis_labels("training step", "score error / authors'")
    grid.figure.suptitle("Relative score error over the authors' model's (dashed: the trained gate, "
                         f"{factors['trained']:g}x; dotted: the authors' quality, {factors[cl.QUALITY_TIER]:g}x)",
                         y=1.01, fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(grid.figure)
    return out


def conclusion(summary: pd.DataFrame) -> str:
    """The cheapest schedule whose models all pass, or the measured distance from it; then the same for
    the authors'-quality tier (``quality_conclusion``)."""
    passing = summary[summary["passing"] == summary["models"]]
    if not passing.empty:
        best = passing.sort_values("training s").iloc[0]
        return (f"The cheapest schedule tried under which all {best['models']} models pass the gate is "
                f"**{best['schedule']}** "
                f"({best['steps']:,} steps, {best['training s']:,} s of training on {best['threads']} thread(s)). "
                + quality_conclusion(summary))
    closest = summary.sort_values("largest error / authors'").iloc[0]
    worst_error = closest["largest error / authors'"]
    return (f"**No schedule tried so far trains all {closest['models']} models past the gate.** "
            f"The closest is {closest['schedule']}: "
            f"{closest['passing']} of {closest['models']} models pass, the smallest late score ratio is "
            f"{closest['smallest late ratio']:.2f} and the largest relative score error is "
            f"{worst_error:.0f}x the authors' model's. Claims on models trained this way "
            "are INCONCLUSIVE, not decided.")


def quality_conclusion(summary: pd.DataFrame) -> str:
    """Whether a schedule puts all its models into the authors'-quality tier (the cheapest that does), else the
    most any schedule with R~ measured puts there."""
    measured = summary[summary["residual recorded"]]
    reaching = measured[measured["quality"] == measured["models"]]
    if not reaching.empty:
        best = reaching.sort_values("training s").iloc[0]
        return (f"The cheapest schedule tried that puts all {best['models']} into the authors' quality is "
                f"**{best['schedule']}** ({best['steps']:,} steps).")
    if measured.empty:
        return "No schedule's record has R̃, so none is placed in the authors'-quality tier."
    most = measured.loc[measured["quality"].idxmax()]
    factor = cl.CLAIM_SETTINGS[cl.TIERS[cl.QUALITY_TIER][0]]
    return (f"**No schedule tried puts all {most['models']} models into the authors' quality** (relative score error "
            f"and R̃ at most {factor:g}x the authors' model's): of the schedules whose records have R̃, the most is "
            f"{most['quality']} of {most['models']} ({most['schedule']}, {most['steps']:,} steps), "
            "so the `converged` scale keeps the schedule that passes the gate.")


def run_commands(records: list[dict], study_dir: Path) -> list[str]:
    """The ``fpbench budget run`` commands that made these records, one per thread count."""
    by_threads: dict[int | None, list[str]] = {}
    for rec in records:
        by_threads.setdefault(rec.get("threads"), []).append(rec["name"])
    return [budget_command(names, threads, study_dir)
            for threads, names in sorted(by_threads.items(), key=lambda item: item[0] or 0)]


def budget_command(names: list[str], threads: int | None, study_dir: Path) -> str:
    """The ``fpbench budget run`` command for ``names`` on ``threads`` torch threads each (None: not
    recorded, as in probes written before threads were; the flag is left out)."""
    flag = f" --threads {threads}" if threads else ""
    return f"fpbench budget run --schedules {','.join(names)}{flag} --dir {study_dir}"


def not_recorded(records: list[dict]) -> list[str]:
    """The schedules of ``SCHEDULES`` that have no record in this study."""
    recorded = {r["name"] for r in records}
    missing = [name for name in SCHEDULES if name not in recorded]
    return [f"Schedules defined in `fpbench.run.budget.SCHEDULES` with no record in this study: "
            f"{', '.join(missing)}."] if missing else []


def write_budget_report(study_dir: Path, out: Path, command: str) -> Path:
    records, unfinished = load_records(study_dir), load_in_progress(study_dir)
    if not records:
        raise FpbenchError(f"no finished schedule under {study_dir}; run `fpbench budget run` first")
    summary = summary_frame(records)
    fig = figure(trajectories_frame(records + unfinished), out.parent / "figures" / "budget-trajectories.png")
    low, high = cl.CLAIM_SETTINGS[cl.GATE_RATIO_BAND]
    lines = ["# fpbench budget study: how much training the paper's 12 models need on a CPU", "",
             f"Generated {datetime.date.today().isoformat()} from `{study_dir}` by `{command}`. The study itself "
             "(hours on 2 cores; a rerun skips finished schedules):", "", "```bash",
             *run_commands(records + unfinished, study_dir), "```", "",
             "The paper's protocol (loss L_DSM + w_R R̃, eq. 20; a fresh Adam per lr stage; the authors' network) "
             "on its three targets at w_R ∈ {0, 0.1, 1, 10}, seed 0, all 12 models trained as one ensemble per "
             "schedule in one process (its torch threads in the table; two single-thread schedules at a time, or one "
             "on two threads, on the 2-core machine); a schedule "
             "whose first steps equal another's (same settings and learning rates) starts from that one's kept "
             "checkpoint, the same numbers as a run from step 0, and its training time counts those steps. Every "
             f"{PROBE_EVERY:,} steps each model's score is compared with the exact score "
             "(fpbench/core/convergence.py); at the end each model is also sampled "
             f"({SAMPLE['n']:,} ODE and SDE samples, nfe = {SAMPLE['nfe']}) "
             "for the shares inside the grid. The gate is the one the claims use (fpbench/analysis/claims.py): "
             f"score ratio within [{low:g}, {high:g}] at t ≥ {LATE_FRACTION:g} T, relative score error at most "
             f"{cl.CLAIM_SETTINGS[cl.GATE_ERROR_FACTOR]:g}x the authors' published model of the same target and "
             f"w_R, and ODE/SDE shares inside the grid at least p0's minus {cl.CLAIM_SETTINGS[cl.GATE_GRID_LOSS]:g}.",
             "", conclusion(summary), "", "## Schedules", "",
             summary_table(summary).to_markdown(index=False, floatfmt=".3g"), "",
             *not_recorded(records + unfinished), ""]
    for rec in records:
        lines += [f"### {rec['name']}", "", convergence_table(members_frame(rec)).to_markdown(index=False,
                                                                                       floatfmt=".3g"), ""]
    lines += levers_section(records)
    lines += in_progress_section(unfinished, study_dir)
    lines += ["## Trajectories", "", "The frontier: each model's relative score error over the authors' model's at "
              f"every probe ({PROBE_EVERY:,} steps), one line per schedule, with the two tiers' allowances; a schedule "
              "that starts from another's checkpoint follows the same line up to there (drawn over it).", "",
              f"![trajectories](figures/{fig.name})", ""]
    last = trajectories_frame(records + unfinished).sort_values("step").groupby(["schedule", "target", "w_R"]).tail(4)
    last = last.assign(probe=last.groupby(["schedule", "target", "w_R"]).cumcount(ascending=False).map(
        {3: "4th last", 2: "3rd last", 1: "2nd last", 0: "last"}))
    last["cell"] = [f"{v:.3f} (step {s:,})" for v, s in zip(last[LATE_RATIO], last["step"])]
    pivot = last.pivot(index=["schedule", "target", "w_R"], columns="probe", values="cell")
    pivot = pivot[[c for c in ("4th last", "3rd last", "2nd last", "last") if c in pivot]]
    lines += ["Smallest late score ratio at each schedule's last four probes:", "", pivot.to_markdown(), ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return out
