"""Train models of the same shape together, as one batch of parameters, with forward-mode jets.

Every loss term of every member is evaluated for all members at once by ``fpbench.core.jet.BatchedMLP``
(one batched matmul per layer for values, tangents and Laplacian; no nested autograd); the
parameter gradient of sum_e L_e is one backward pass and reaches each member's own parameters.
Adam is elementwise, so one Adam over all members' parameters is E independent Adams with the
authors' staged schedule. Each member draws its data from its own generator in the same order as
``fpbench.train.loop.train``, so a member's training does not depend on which other members share
its batch, and an ensemble reproduces one-by-one training up to floating-point rounding.

A member whose loss turns NaN or inf stops alone (its error is returned in its place); the
others go on. Members must be fpbench MLPs with methods built from fpbench's loss terms
(``can_ensemble``); the runner trains any other case one by one.
"""

from __future__ import annotations

import time
import warnings

import torch

from ..core import operators as ops
from ..core.errors import FpbenchError
from ..core.jet import BatchedMLP, supports
from ..core.losses import DSMBatch, dsm_batch, dsm_loss_terms
from ..core.residuals import Box, collocation_points, log_fp_residual_from, score_fp_residual, score_fp_residual_from
from .loop import (
    TrainingError,
    TrainResult,
    loss_failure,
    lr_at,
    progress_bar,
    read_checkpoint,
    save_atomic,
    stage_boundaries,
    stop_at_deadline,
)
from .methods import Method
from .process import cpu_settings


def can_ensemble(method, model) -> bool:
    """fpbench's own loss terms (``Method.uses_builtin_terms``), combined by ``Method.loss`` with the weights
    of ``Method.weights_at`` (a schedule is fine), on an fpbench MLP (the log-FP term only on a potential
    model). Anything else trains one by one."""
    own = type(method).loss_terms is Method.loss_terms and type(method).loss is Method.loss
    if not own or not method.uses_builtin_terms() or not supports(model):
        return False
    return getattr(model, "is_potential", False) or not method.weights.get("log_fp", 0)


def _member_draws(target, sde, method, cfg, gen, dtype, device):
    """One member's random draws for one iteration, in the order of ``train`` and ``Method.loss``."""
    x0 = target.sample(cfg["dsm_batch"], gen, dtype=dtype, device=device)
    draws = {}
    for term, weight in method.weights.items():
        if weight == 0:
            continue
        if term == "dsm":
            draws["dsm"] = dsm_batch(x0, sde, cfg["time_law"], cfg["t_eps"], gen)
        else:
            draws[term] = collocation_points(cfg["residual_points"], target.dim, Box(*cfg["box"]), cfg["residual_t0"],
                                       sde.T, gen, dtype, device)
    return draws


def member_chunk(device) -> int | None:
    """Members evaluated per batched call: all of them on a GPU (one big batched matmul per layer);
    one at a time on a CPU, where a member's activations stay in cache and the stacked tensors of
    all members would make every elementwise operation memory-bound (measured: one sigmoid over 12
    members' stacked activations cost about what their matmul does)."""
    return None if device is not None and torch.device(device).type == "cuda" else 1


def term_values(models, sde, cfg: dict, term: str, draws: list, chunk: int | None = None,
                compiled: bool = False) -> torch.Tensor:
    """The unweighted ``term`` of each model on its own draws, shape (E,); ``chunk`` members per call;
    ``compiled``: through ``torch.compile`` (see ``compiled_terms``)."""
    chunk = chunk or len(models)
    return torch.cat([_term_chunk(models[i:i + chunk], sde, cfg, term, draws[i:i + chunk], compiled)
                      for i in range(0, len(models), chunk)])


def _stacked_draws(term: str, draws: list) -> tuple[torch.Tensor, ...]:
    if term == "dsm":
        return tuple(torch.stack([getattr(dr["dsm"], f) for dr in draws]) for f in ("x0", "t", "eps", "xt"))
    return torch.stack([dr[term][0] for dr in draws]), torch.stack([dr[term][1] for dr in draws])


def _term_chunk(models, sde, cfg: dict, term: str, draws: list, compiled: bool = False) -> torch.Tensor:
    batched = BatchedMLP(models)
    tensors = _stacked_draws(term, draws)
    if term == "score_fp" and batched.is_potential:  # third derivatives: autograd, never compiled
        return _potential_score_fp(batched, sde, *tensors)
    args = (batched.layers(), batched.spec, sde, cfg["dsm_weighting"], term, *tensors)
    return compiled_terms(*args) if compiled else jet_terms(*args)


def jet_terms(layers, spec, sde, weighting: str, term: str, *tensors) -> torch.Tensor:
    """``term`` (dsm, log_fp, or score_fp of a score network) of the members given by ``layers`` and
    ``spec`` (``BatchedMLP.from_layers``) on their stacked draws, shape (E,): a pure function of
    tensors, by the forward-mode jets and the written-out score of ``fpbench.core.jet``."""
    batched = BatchedMLP.from_layers(layers, spec)
    if term == "dsm":
        b = DSMBatch(*tensors)
        e, n, d = b.xt.shape
        s = batched.score(b.xt, b.t).reshape(-1, d)
        flat = DSMBatch(b.x0.reshape(-1, d), b.t.reshape(-1), b.eps.reshape(-1, d), b.xt.reshape(-1, d))
        return dsm_loss_terms(lambda _x, _t: s, sde, flat, weighting).reshape(e, n).mean(-1)
    x, t = tensors
    e, n, d = x.shape
    xf, tf = x.reshape(-1, d), t.reshape(-1)
    if term == "log_fp":  # eq. 20
        _, u_t, grad_u, lap_u = batched.potential_derivatives(x, t)
        r2 = log_fp_residual_from(u_t.reshape(-1), grad_u.reshape(-1, d), lap_u.reshape(-1), sde, xf, tf) ** 2
    elif term != "score_fp":
        raise ValueError(f"the ensemble path has no jet for loss term {term!r}; it computes only dsm, log_fp, score_fp")
    else:  # eq. 32 for a score network
        s, s_t, jac, grad_div = (v.reshape(e * n, *v.shape[2:]) for v in batched.score_derivatives(x, t))
        r2 = score_fp_residual_from(s, s_t, jac, grad_div, sde, xf, tf).pow(2).sum(-1)
    return r2.reshape(e, n).mean(-1)


def _potential_score_fp(batched, sde, x, t) -> torch.Tensor:
    """eq. 32 for potentials needs third derivatives: autograd on the batched forward."""
    e, n, d = x.shape
    xf, tf = x.reshape(-1, d), t.reshape(-1)

    def flat_potential(xx, tt):
        return batched.forward(xx.reshape(e, n, d), tt.reshape(e, n)).reshape(-1)
    score = lambda xx, tt: ops.gradient(flat_potential, xx, tt, create_graph=True)
    return score_fp_residual(score, sde, xf, tf, create_graph=True).pow(2).sum(-1).reshape(e, n).mean(-1)


_COMPILED: dict = {}


def compiled_terms(*args) -> torch.Tensor:
    """``jet_terms`` through ``torch.compile`` (static shapes): inductor fuses the jets' elementwise
    work into a few loops around the matmuls (the `--compile` rows of reports/performance.md). Traced once per
    term and shape; the members' weights are inputs, so any member of the shape reuses the trace.
    Where compiling fails (no C++ compiler, an unsupported build), this warns once and the process
    goes on with ``jet_terms``: the same numbers up to rounding."""
    if _COMPILED.get("failed"):
        return jet_terms(*args)
    try:
        if "fn" not in _COMPILED:
            _COMPILED["fn"] = torch.compile(jet_terms, dynamic=False)
        return _COMPILED["fn"](*args)
    except Exception as err:  # a compiler problem: the eager path gives the same numbers
        _COMPILED["failed"] = True
        warnings.warn(f"torch.compile failed ({type(err).__name__}: {str(err)[:200]}); training without it",
                      stacklevel=2)
        return jet_terms(*args)


def compiled_in_effect(compile: bool) -> bool:
    """Whether training asked to ``compile`` did run compiled terms (not the eager fallback of a failed
    compile, which rounds differently): what a case's record says it trained by."""
    return bool(compile) and not _COMPILED.get("failed")


def _all_terms(models, sde, cfg, methods, draws, alive: list[int], chunk,
               compiled: bool) -> dict[int, dict[str, torch.Tensor]]:
    values: dict[int, dict] = {e: {} for e in alive}
    terms = sorted({k for e in alive for k, w in methods[e].weights.items() if w != 0})
    for term in terms:
        members = [e for e in alive if methods[e].weights.get(term, 0) != 0]
        vals = term_values([models[e] for e in members], sde, cfg, term, [draws[e] for e in members], chunk,
                           compiled)
        for e, v in zip(members, vals):
            values[e][term] = v
    # each member's terms in its method's order, as Method.loss reports them
    return {e: {k: values[e][k] for k in methods[e].weights if k in values[e]} for e in alive}


def train_ensemble(models, methods, targets, sde, cfg: dict, seeds: list[int], labels: list[str] | None = None,
                   device=None, checkpoint=None, compile: bool = False,
                   probe=None, deadline=None, progress: bool = False,
                   until: int | None = None) -> list[TrainResult | TrainingError]:
    """Train ``models`` (same architecture, same train config) together, in place. Returns each
    member's TrainResult, or the TrainingError that stopped it. ``checkpoint`` (a path) is written
    atomically every ``checkpoint_every`` iterations and resumed from. ``compile``: the loss terms
    through ``torch.compile`` (``compiled_terms``). ``probe``: a pair (every, fn); fn(iteration, models)
    is called after every ``every`` iterations (fpbench.run.budget records score profiles with it).
    ``deadline``: a ``train.Deadline``; past it the checkpoint is written and ``TimeBudgetReached`` raised.
    ``progress``: a bar over the iterations on a terminal. ``until``: stop before that iteration (the first
    ``until`` iterations of the full schedule, its learning rates included: ``fpbench audit --steps``)."""
    if not all(can_ensemble(m, model) for m, model in zip(methods, models)):
        raise ValueError("ensemble training needs fpbench MLP models and methods built from fpbench's loss terms")
    labels = labels or [f"member{e}" for e in range(len(models))]
    with cpu_settings(device):
        return _train_ensemble(models, methods, targets, sde, cfg, seeds, labels, device, checkpoint, compile, probe,
                               deadline, progress, until)


def _train_ensemble(models, methods, targets, sde, cfg, seeds, labels, device, checkpoint, compile, probe=None,
                    deadline=None, progress=False, until=None):
    dtype = getattr(torch, cfg.get("dtype", "float32"))
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    params = [p for m in models for p in m.parameters()]
    bounds = stage_boundaries(cfg["iterations"], cfg["lr_stages"])
    state = _resume(checkpoint, models, gens)
    start = state["iteration"]
    histories = state["histories"] or [[] for _ in models]
    failures: dict[int, str] = {int(k): v for k, v in state["failures"].items()}
    stage, lr = lr_at(max(start - 1, 0), bounds)
    opt = torch.optim.Adam(params, lr=lr)
    if state["optimizer"] is not None:
        opt.load_state_dict(state["optimizer"])
    began = time.perf_counter()
    trained_s = lambda: state.get("seconds", 0.0) + time.perf_counter() - began  # with the time before a resume
    # the state a checkpoint holds before iteration ``it`` (``opt`` is read when called: a new stage replaces it)
    snapshot = lambda it: {"iteration": it, "models": [m.state_dict() for m in models],
                           "optimizer": opt.state_dict(), "generators": [g.get_state() for g in gens],
                           "histories": histories, "failures": {str(k): v for k, v in failures.items()},
                           "seconds": trained_s()}
    end = cfg["iterations"] if until is None else min(until, cfg["iterations"])
    bar = progress_bar(cfg["iterations"], f"train {len(models)} as one ensemble", progress, initial=start)
    for it in range(start, end):
        bar.update(1)
        stop_at_deadline(deadline, checkpoint, snapshot, f"ensemble of {len(models)}", it)
        alive = [e for e in range(len(models)) if e not in failures]
        if not alive:
            break
        new_stage, lr = lr_at(it, bounds)
        if new_stage != stage:  # the authors start a fresh Adam at each stage
            stage, opt = new_stage, torch.optim.Adam(params, lr=lr)
        draws = {e: _member_draws(targets[e], sde, methods[e], cfg, gens[e], dtype, device) for e in alive}
        values = _all_terms(models, sde, cfg, methods, draws, alive, member_chunk(device), compile)
        totals = {}
        for e in alive:
            try:
                weights = methods[e].step_weights(it, cfg["iterations"])
            except FpbenchError as err:  # a user's schedule: this member fails alone, as on the loop
                failures[e] = f"case {labels[e]}: {err} at iteration {it}"
                continue
            totals[e] = sum(weights[k] * v for k, v in values[e].items())
        for e, total in totals.items():
            failure = loss_failure(total.item(), histories[e][0]["loss"] if histories[e] else None)
            if failure:
                terms = {k: float(v.detach()) for k, v in values[e].items()}
                failures[e] = f"case {labels[e]}: {failure} at iteration {it} (terms {terms})"
        opt.zero_grad(set_to_none=True)
        kept = [totals[e] for e in alive if e not in failures]
        if kept:
            torch.stack(kept).sum().backward()
            opt.step()
        if it % cfg["log_every"] == 0 or it == cfg["iterations"] - 1:
            for e in alive:
                if e not in failures:
                    histories[e].append({"iteration": it, "loss": float(totals[e].detach()),
                                         **{k: float(v.detach()) for k, v in values[e].items()}})
        if probe is not None and (it + 1) % probe[0] == 0:
            probe[1](it + 1, models)
        if checkpoint is not None and (it + 1) % cfg["checkpoint_every"] == 0:
            save_atomic(snapshot(it + 1), checkpoint)
    bar.close()
    seconds = trained_s()
    return [TrainingError(failures[e]) if e in failures else TrainResult(h, seconds / len(models), end)
            for e, h in enumerate(histories)]


def _resume(checkpoint, models, gens) -> dict:
    state = read_checkpoint(checkpoint)
    if state is None:
        return {"iteration": 0, "histories": None, "optimizer": None, "failures": {}}
    for model, weights in zip(models, state["models"]):
        model.load_state_dict(weights)
    for g, g_state in zip(gens, state["generators"]):
        g.set_state(g_state)
    return state
