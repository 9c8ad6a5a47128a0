"""Training: Adam with a staged learning rate (the authors': 1e-3, 1e-4, 1e-5 for 25%, 65%, 10%
of the iterations, a fresh Adam at each stage), a fresh p0 batch every iteration.

Deterministic for a seed: the model is initialised from ``torch.manual_seed(seed)`` and every
random draw comes from one generator seeded with ``seed``. A checkpoint (model, optimiser,
generator, iteration) is written atomically every ``checkpoint_every`` iterations, so a killed
run resumes with bit-identical numbers. A NaN or inf loss, a method that raises, or a loss that
is not a scalar tensor stops the case with ``TrainingError`` naming the case and the iteration.
A ``Deadline`` (``fpbench run --max-minutes``) stops training before the first iteration that starts
after it: the checkpoint is written at that iteration and ``TimeBudgetReached`` is raised; a later
run resumes from there with the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.files import read_or_set_aside
from .methods import TrainContext


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss)."""


class TimeBudgetReached(Exception):
    """The run's time budget ended during training; the checkpoint holds the state to resume from."""


@dataclass(frozen=True)
class Deadline:
    """A wall-clock time (``time.time()`` seconds) after which no training iteration starts."""

    at: float

    def reached(self) -> bool:
        return time.time() >= self.at


def stop_at_deadline(deadline: Deadline | None, checkpoint: Path | None, state, what: str, iteration: int) -> None:
    """At a passed deadline: write ``state(iteration)`` to ``checkpoint`` and raise ``TimeBudgetReached``."""
    if deadline is None or not deadline.reached():
        return
    if checkpoint is not None:
        save_atomic(state(iteration), checkpoint)
    raise TimeBudgetReached(f"{what}: stopped at the time budget before iteration {iteration}")


@dataclass
class TrainResult:
    history: list[dict]  # one row every log_every iterations: iteration, loss, terms
    seconds: float
    iterations: int


def stage_boundaries(iterations: int, lr_stages: list) -> list[tuple[int, float]]:
    """[(first iteration of the stage, lr)] from [(lr, fraction of the iterations)]."""
    bounds, start = [], 0
    for lr, fraction in lr_stages:
        bounds.append((start, float(lr)))
        start += int(round(fraction * iterations))
    return bounds


def lr_at(iteration: int, bounds) -> tuple[int, float]:
    stage = max(i for i, (start, _) in enumerate(bounds) if start <= iteration)
    return stage, bounds[stage][1]


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def train(model, method, target, sde, cfg: dict, seed: int, case: str = "case",
          checkpoint: Path | None = None, progress: bool = False, device=None,
          deadline: Deadline | None = None) -> TrainResult:
    """Train ``model`` in place with ``method`` on ``target`` under ``sde``; ``cfg`` is the train config."""
    dtype = getattr(torch, cfg.get("dtype", "float32"))
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same draws on every device
    bounds = stage_boundaries(cfg["iterations"], cfg["lr_stages"])
    state = _resume(checkpoint, model, gen)
    start, history = state["iteration"], state["history"]
    # The stage of the last completed iteration: resuming at a stage boundary still starts a fresh Adam.
    stage, lr = lr_at(max(start - 1, 0), bounds)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    if state.get("optimizer") is not None:
        opt.load_state_dict(state["optimizer"])
    began = time.perf_counter()
    trained_s = lambda: state.get("seconds", 0.0) + time.perf_counter() - began  # with the time before a resume
    bar = progress_bar(cfg["iterations"], f"train {case}", progress, initial=start)
    # the state a checkpoint holds before iteration ``it`` (``opt`` is read when called: a new stage replaces it)
    snapshot = lambda it: {"iteration": it, "model": model.state_dict(), "optimizer": opt.state_dict(),
                           "generator": gen.get_state(), "history": history,
                           "seconds": trained_s()}
    for it in range(start, cfg["iterations"]):
        stop_at_deadline(deadline, checkpoint, snapshot, case, it)
        new_stage, lr = lr_at(it, bounds)
        if new_stage != stage:  # the authors start a fresh Adam at each stage
            stage, opt = new_stage, torch.optim.Adam(model.parameters(), lr=lr)
        x0 = target.sample(cfg["dsm_batch"], gen, dtype=dtype, device=device)
        ctx = TrainContext(sde, target, x0, gen, cfg, it, cfg["iterations"])
        loss, terms = _method_loss(method, model, ctx, case, it)
        value = loss.item()
        failure = loss_failure(value, history[0]["loss"] if history else None)
        if failure:
            raise TrainingError(f"case {case}: {failure} at iteration {it} (terms {terms})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if it % cfg["log_every"] == 0 or it == cfg["iterations"] - 1:
            history.append({"iteration": it, "loss": value, **terms})
        if checkpoint is not None and (it + 1) % cfg["checkpoint_every"] == 0:
            save_atomic(snapshot(it + 1), checkpoint)
        bar.update(1)
    bar.close()
    return TrainResult(history, trained_s(), cfg["iterations"])


# A finite loss this many times its first value (at least 1 in size) has diverged: at lr 1e3 a paper-suite
# loss climbed from ~1 to ~1e20 and the case failed much later, in the ODE solver, for an unrelated reason.
DIVERGENCE_FACTOR = 1e6


def loss_failure(loss: float, first: float | None) -> str | None:
    """Why training must stop at this ``loss`` (None if it need not): the loss is NaN or infinite, or it
    has diverged while finite, above ``DIVERGENCE_FACTOR`` x max(|first iteration's loss|, 1)."""
    if not math.isfinite(loss):
        return f"loss is {loss}"
    bound = DIVERGENCE_FACTOR * max(abs(first if first is not None else loss), 1.0)
    if loss > bound:
        return f"training diverged: loss {loss:.3g} > {DIVERGENCE_FACTOR:g} x the first iteration's {first:.3g}"
    return None


def _method_loss(method, model, ctx, case: str, it: int):
    """The method's (loss, terms), or a TrainingError naming the case, the method and the iteration
    when the method raises or returns anything but a scalar tensor."""
    name = getattr(method, "name", type(method).__name__)
    try:
        loss, terms = method.loss(model, ctx)
    except Exception as err:  # a user's method: any error stops this case only
        raise TrainingError(f"case {case}: method {name!r} raised {type(err).__name__} at iteration {it}: {err}") \
            from err
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise TrainingError(f"case {case}: method {name!r} returned a loss of shape {shape} at iteration {it}; "
                            "a loss must be a scalar tensor")
    return loss.reshape(()), terms


def read_checkpoint(checkpoint: Path | None) -> dict | None:
    """A training checkpoint's state, or None when there is none. An unreadable one is moved aside
    (``fpbench.core.files``) and training starts again from iteration 0: with the same seeds that
    reproduces an uninterrupted run exactly, where resuming from a damaged state could not."""
    if checkpoint is None:
        return None
    return read_or_set_aside(checkpoint, lambda p: torch.load(p, weights_only=True),
                             "training starts again from iteration 0")


def _resume(checkpoint: Path | None, model, gen) -> dict:
    state = read_checkpoint(checkpoint)
    if state is None:
        return {"iteration": 0, "history": [], "optimizer": None}
    model.load_state_dict(state["model"])
    gen.set_state(state["generator"])
    return state


def progress_bar(total: int, desc: str, enabled: bool, initial: int = 0):
    """A tqdm bar on stderr while ``enabled`` and stderr is a terminal (off in logs and under ``--quiet``)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=None if enabled else True, leave=False)
