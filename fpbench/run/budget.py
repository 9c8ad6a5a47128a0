"""The budget study: the cheapest training schedule on a 2-core CPU under which the paper suite's 12
potential models (3 targets x w_R in {0, 0.1, 1, 10}) learn their targets, by the convergence gate.

The protocol is the paper's (loss L_DSM + w_R R~, eq. 20; a fresh Adam at each lr stage); a
schedule varies only the number of steps, the lr stages, the DSM batch and the residual points
(``SCHEDULES``, every setting the study chooses, in one place). For each schedule the 12 models
(seed 0) train as one ensemble; every ``probe_every`` steps each member's score profile
(``fpbench.core.convergence``) is recorded; at the end each member is sampled (``SAMPLE``) for the share
of ODE and SDE samples inside the grid, and its final evidence and the gate's verdict are stored.

``run_study`` writes ``<dir>/<schedule>.json`` per schedule (a rerun skips finished ones) and a
log per schedule; ``fpbench.reports.budget_report`` turns them into ``reports/budget.md``. A schedule that
is interrupted (or stopped by ``deadline``, ``fpbench budget run --max-minutes``) resumes: the ensemble's
checkpoint (``<schedule>.ckpt``, with Adam's state and the data streams) is written at every probe,
and the probes recorded so far (``<schedule>.probes.jsonl``) are kept up to its iteration. These files
are small (about 2 MB for 12 models) and the repository keeps them, so a study resumes on a new machine.

Schedules that agree on a prefix share it: the latest checkpoint another schedule could start from
is kept (``<schedule>.kept/<iteration>.ckpt``, ``serves``), and a schedule that has not started
begins from the latest kept checkpoint of another schedule with the same settings and the same learning
rate at every step before it (``branch_point``), with that schedule's probes and training seconds up to
there: the same numbers as a run from step 0 (the data streams and Adam's state are in the checkpoint),
and the cost it reports is still the whole schedule's.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path

from ..core.errors import FpbenchError
from .store import read_json, write_json

QUICK_STAGES = [[1e-3, 0.6], [1e-4, 0.3], [1e-5, 0.1]]
_QUICK = {"lr_stages": QUICK_STAGES, "dsm_batch": 4000, "residual_points": 500}
SCHEDULES: dict[str, dict] = {
    "quick-4k": {**_QUICK, "iterations": 4000},  # the quick scale as it stands
    "steps-12k": {**_QUICK, "iterations": 12000},  # 3x the steps at the same stage fractions
    "steps-24k": {**_QUICK, "iterations": 24000},
    "high-lr-12k": {**_QUICK, "iterations": 12000, "lr_stages": [[2e-3, 0.6], [1e-4, 0.3], [1e-5, 0.1]]},
    "long-lr-12k": {**_QUICK, "iterations": 12000, "lr_stages": [[1e-3, 0.8], [1e-4, 0.15], [1e-5, 0.05]]},
    # steps-24k came closest (7 of 12); the collapse is undone at lr 1e-3 (reports/budget.md): keep it longer
    "long-lr-24k": {**_QUICK, "iterations": 24000, "lr_stages": [[1e-3, 0.85], [1e-4, 0.1], [1e-5, 0.05]]},
    "steps-48k": {**_QUICK, "iterations": 48000},
    "res2000-12k": {**_QUICK, "iterations": 12000, "residual_points": 2000},
    "batch2000-12k": {**_QUICK, "iterations": 12000, "dsm_batch": 2000},
    # the steps-to-quality frontier (issue 36), lever 1: the schedule's shape. lr 1e-3 for the first 12,000
    # steps only, then lr 1e-4, the last 10% at 1e-5. The three share their first 43,000 and 64,000 steps, so
    # 72k branches from 48k and 96k from 72k; short-lr-48k against steps-48k is the lever at equal cost.
    **{f"short-lr-{k}k": {**_QUICK, "iterations": k * 1000,
                          "lr_stages": [[1e-3, 12 / k], [1e-4, 1 - 12 / k - 0.1], [1e-5, 0.1]]} for k in (48, 72, 96)},
}
PROBE_EVERY = 1000
PROBE_POINTS = 2000
SAMPLE = {"n": 10_000, "nfe": 200}  # per member, for the shares inside the grid
SUITE, SCALE, SEED = "paper", "quick", 0


def study_cases(schedule: dict):
    """The paper suite's cases at ``quick`` (seed 0) with the schedule's training settings."""
    from .suite import Case, expand, load_suite

    cases = []
    for case in expand(load_suite(SUITE), SCALE, seeds=1):
        cfg = copy.deepcopy(case.config)
        cfg["train"].update(copy.deepcopy(schedule))
        cfg["train"]["checkpoint_every"] = PROBE_EVERY  # resumable at every probe
        cases.append(Case(cfg))
    return cases


def run_schedule(name: str, out_dir: str, threads: int = 1, compile: bool = True,
                 deadline: float | None = None) -> dict:
    """Train the 12 models under ``SCHEDULES[name]``, recording their score profiles; write and
    return the record. ``deadline`` (``time.time()`` seconds): past it the checkpoint is written and
    ``train.loop.TimeBudgetReached`` raised; the same call resumes."""
    import torch

    from ..core.convergence import evidence, score_profile
    from ..train.ensemble import train_ensemble
    from ..train.loop import Deadline
    from .suite import build

    torch.set_num_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path, log_path = out / f"{name}.json", out / f"{name}.log"
    if path.exists():
        return read_json(path)
    if deadline and time.time() >= deadline:  # before branching: a later start may branch from further on
        from ..train.loop import TimeBudgetReached

        raise TimeBudgetReached(f"{name}: not started, the time budget was spent")
    cases = study_cases(SCHEDULES[name])
    built = [build(c) for c in cases]
    labels = [c.label for c in cases]
    checkpoint, probes_path = out / f"{name}.ckpt", out / f"{name}.probes.jsonl"
    kept = out / f"{name}.kept"
    kept.mkdir(exist_ok=True)
    branch_path = out / f"{name}.branch.json"
    if not checkpoint.exists() and not probes_path.exists():
        _branch(name, out, checkpoint, probes_path, branch_path)
    resumed_at = _checkpoint_iteration(checkpoint)
    trajectories, offset = _recorded_probes(probes_path, labels, resumed_at)
    began = time.perf_counter()

    def probe(iteration, models):
        if checkpoint.exists():  # the checkpoint of the previous probe (this one's is written after it)
            _keep(name, checkpoint, kept)
        elapsed = offset + time.perf_counter() - began
        line = {"iteration": iteration, "elapsed_s": elapsed, "threads": threads, "profiles": {}}
        for (target, sde, _, _), model, label in zip(built, models, labels):
            gen = torch.Generator().manual_seed(iteration)
            p = score_profile(lambda x, t, m=model: m.score(x, t), target, sde, PROBE_POINTS, gen)
            trajectories[label].append({"iteration": iteration, **p})
            line["profiles"][label] = p
        with open(probes_path, "a") as fh:
            fh.write(json.dumps(line) + "\n")
        worst = min(t[-1]["ratio_min_late"] for t in trajectories.values())
        with open(log_path, "a") as fh:
            fh.write(f"{name} step {iteration} {elapsed:.0f}s worst late ratio {worst:.3f}\n")

    cfg = cases[0].config["train"]
    results = train_ensemble([b[2] for b in built], [b[3] for b in built], [b[0] for b in built], built[0][1], cfg,
                             [c.config["seed"] for c in cases], labels, checkpoint=checkpoint, compile=compile,
                             probe=(PROBE_EVERY, probe), deadline=Deadline(deadline) if deadline else None)
    train_seconds = offset + time.perf_counter() - began
    members = {}
    for case, (target, sde, model, _), res in zip(cases, built, results):
        if isinstance(res, Exception):
            members[case.label] = {"failed": str(res)}
            continue
        members[case.label] = {"target": case.config["target"]["name"], "w_r": case.config["method"]["params"]["w_r"],
                               **evidence(model, target, sde, res.history, SEED),
                               **inside_grid(model, target, sde, case),
                               "log_fp_residual": residual_as_levels(model, sde, target.dim, case)}
    record = {"name": name, "schedule": SCHEDULES[name], "threads": threads, "compile": compile,
              "branched_from": json.loads(branch_path.read_text()) if branch_path.exists() else None,
              "train_seconds": train_seconds, "member_steps_per_second": len(cases) * cfg["iterations"] / train_seconds,
              "members": members, "trajectories": trajectories}
    write_json(path, record)  # atomically: a record on disk is a whole one (schema.BUDGET_RECORD_KEYS)
    checkpoint.unlink(missing_ok=True)
    return record


def branch_point(name: str, out: Path) -> tuple[str, int] | None:
    """(schedule, iteration) of the latest kept checkpoint that ``name`` can start from: another schedule
    with the same settings but for ``iterations`` and ``lr_stages``, whose learning rate (and stage) equals
    ``name``'s at every step before that iteration; None when there is none."""
    from ..train.loop import stage_boundaries

    mine = SCHEDULES[name]
    bounds = stage_boundaries(mine["iterations"], mine["lr_stages"])
    best = None
    for other, theirs in SCHEDULES.items():
        if other == name or _rest(theirs) != _rest(mine) or not (out / f"{other}.kept").is_dir():
            continue
        their_bounds = stage_boundaries(theirs["iterations"], theirs["lr_stages"])
        for path in (out / f"{other}.kept").glob("*.ckpt"):
            k = int(path.stem)
            if k < mine["iterations"] and _agree_before(bounds, their_bounds, k):
                best = max(best or (other, 0), (other, k), key=lambda c: c[1])
    return best


def serves(name: str, k: int) -> set[str]:
    """The other schedules that could start from ``name``'s checkpoint before iteration ``k``: the same
    settings but for ``iterations`` and ``lr_stages``, more than ``k`` iterations, and ``name``'s learning
    rate at every step before ``k``."""
    from ..train.loop import stage_boundaries

    mine = SCHEDULES[name]
    bounds = stage_boundaries(mine["iterations"], mine["lr_stages"])
    return {other for other, theirs in SCHEDULES.items()
            if other != name and _rest(theirs) == _rest(mine) and k < theirs["iterations"]
            and _agree_before(bounds, stage_boundaries(theirs["iterations"], theirs["lr_stages"]), k)}


def _rest(schedule: dict) -> dict:
    """A schedule's settings but for its length and learning rates: what two schedules sharing a prefix
    must have in common."""
    return {k: v for k, v in schedule.items() if k not in ("iterations", "lr_stages")}


def _agree_before(a, b, k: int) -> bool:
    from ..train.loop import lr_at

    return all(lr_at(c, a) == lr_at(c, b) for c in _change_points(a, b, k))


def _keep(name: str, checkpoint: Path, kept: Path) -> None:
    """Keep a copy of ``checkpoint`` in ``kept`` if another schedule could branch from it, and drop the
    kept copies it supersedes (those that serve no schedule it does not): ``kept`` holds only the
    latest checkpoint each other schedule can start from, a few MB that the repository keeps."""
    k = _checkpoint_iteration(checkpoint)
    mine = serves(name, k)
    if not mine:
        return
    shutil.copyfile(checkpoint, kept / f"{k}.ckpt")
    for old in kept.glob("*.ckpt"):
        j = int(old.stem)
        if j < k and serves(name, j) <= mine:
            old.unlink()


def _change_points(a, b, k: int) -> list[int]:
    """Step 0 and the steps before k where either schedule starts a stage: two piecewise-constant
    learning-rate schedules agree on all of [0, k) if they agree at each of these."""
    return sorted({0} | {start for start, _ in (*a, *b) if start < k})


def _branch(name: str, out: Path, checkpoint: Path, probes_path: Path, branch_path: Path) -> None:
    """Start ``name`` from its ``branch_point``: that checkpoint, and the other schedule's probes up to it
    (``branch_path`` says which, for the record)."""
    found = branch_point(name, out)
    if found is None:
        return
    other, k = found
    shutil.copyfile(out / f"{other}.kept" / f"{k}.ckpt", checkpoint)
    lines = [line for line in (out / f"{other}.probes.jsonl").read_text().splitlines() if line.strip()]
    probes_path.write_text("".join(line + "\n" for line in lines if json.loads(line)["iteration"] <= k))
    branch_path.write_text(json.dumps({"schedule": other, "step": k}))
    with open(out / f"{name}.log", "a") as fh:
        fh.write(f"{name} branched from {other} at step {k} (the same settings and learning rates up to there)\n")


def _checkpoint_iteration(checkpoint: Path) -> int:
    """The iteration an interrupted schedule resumes from (0: none, or a damaged checkpoint, which
    ``read_checkpoint`` moves aside so that training starts again as well)."""
    from ..train.loop import read_checkpoint

    state = read_checkpoint(checkpoint)
    return state["iteration"] if state is not None else 0


def _recorded_probes(path: Path, labels: list[str], upto: int) -> tuple[dict, float]:
    """The probes an interrupted schedule recorded up to its checkpoint's iteration ``upto`` (later
    ones are re-run), and the training seconds they had taken. The file is rewritten with just those."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    kept = [line for line in lines if line["iteration"] <= upto]
    path.write_text("".join(json.dumps(line) + "\n" for line in kept))
    trajectories = {label: [{"iteration": line["iteration"], **line["profiles"][label]} for line in kept]
                    for label in labels}
    return trajectories, (kept[-1]["elapsed_s"] if kept else 0.0)


def residual_as_levels(model, sde, dim: int, case) -> float:
    """R~ of a trained member measured as the authors' levels are (``suite.level_case``): what the
    authors'-quality tier compares."""
    from .evaluate import log_fp_residual_estimate
    from .suite import level_case

    return log_fp_residual_estimate(level_case(case.config["target"]["name"],
                                               case.config["method"]["params"]["w_r"]), model, sde, dim)


def inside_grid(model, target, sde, case) -> dict:
    """Shares of ``SAMPLE['n']`` ODE, SDE and p0 samples inside the paper's grid box."""

    from ..core import streams
    from ..core.jet import fast_score
    from ..core.samplers import refined_grid, sample_pair

    low, high, _ = case.config["metrics"]["grid"]
    x_ode, x_sde = sample_pair(fast_score(model), sde, SAMPLE["n"], target.dim, refined_grid(sde.T, SAMPLE["nfe"]),
                               seed=streams.seed_for(SEED, streams.SAMPLERS))
    x_p0 = target.sample(SAMPLE["n"], streams.generator(SEED, streams.P0))
    share = lambda x: float(((x >= low) & (x <= high)).all(-1).double().mean())
    return {"inside_grid_ode": share(x_ode), "inside_grid_sde": share(x_sde), "inside_grid_p0": share(x_p0)}


def run_study(names: list[str], out_dir: str, workers: int = 2, compile: bool = True, threads: int = 1,
              deadline: float | None = None) -> list[dict]:
    """Each schedule in its own process of ``threads`` torch threads, ``workers`` at a time; past
    ``deadline`` (``time.time()`` seconds) each stops at a checkpoint with ``TimeBudgetReached``."""
    unknown = [n for n in names if n not in SCHEDULES]
    if unknown:
        raise FpbenchError(f"unknown schedule(s) {unknown}; known: {', '.join(SCHEDULES)}")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    from .execute import process_pool

    with process_pool(workers) as pool:
        futures = [pool.submit(run_schedule, n, out_dir, threads, compile, deadline) for n in names]
        return [f.result() for f in futures]
