"""Train models of the same shape together: parameters stacked with ``torch.func.stack_module_state``,
one ``vmap``-ed ``functional_call`` forward for all members.

The stacked members are exposed as one *row-independent* flat potential: row r of member e depends
only on member e's parameters, so the operators, residuals and DSM loss of fpbench apply unchanged
and grad_theta of sum_e L_e is every member's own gradient. Adam is elementwise, so one Adam over
the stacked parameters is E independent Adams. Each member draws its data from its own generator in
the same order as ``fpbench.train.train``, so an ensemble reproduces one-by-one training up to the
reduction order of floating-point sums.

Members must use built-in loss terms (``Method`` subclasses that do not override ``loss_terms``);
others are trained one by one.
"""

from __future__ import annotations

import copy
import time

import torch
from torch.func import functional_call, stack_module_state, vmap

from .losses import DSMBatch, dsm_batch, dsm_loss_terms
from .methods import Method
from .operators import gradient
from .residuals import Box, _collocation, log_fp_residual, score_fp_residual
from .train import TrainingError, TrainResult, _lr_at, _save_atomic, stage_boundaries


def can_ensemble(method) -> bool:
    return type(method).loss_terms is Method.loss_terms


class StackedPotential:
    """E potential models as one row-independent potential on flattened inputs (E * n, d)."""

    def __init__(self, models):
        self.params, self.buffers = stack_module_state(models)
        self.base = copy.deepcopy(models[0]).to("meta")
        self.n_members = len(models)
        self.is_potential = getattr(models[0], "is_potential", True)

    def _one(self, params, buffers, x, t):
        return functional_call(self.base, (params, buffers), (x, t))

    def stacked(self, x: torch.Tensor, t: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """phi_e(x_e, t_e) for x (E', n, d), t (E', n); ``members`` selects E' of the E members."""
        params = self.params if members is None else {k: v[members] for k, v in self.params.items()}
        buffers = self.buffers if members is None else {k: v[members] for k, v in self.buffers.items()}
        return vmap(self._one)(params, buffers, x, t)

    def flat(self, members: torch.Tensor, n: int):
        """The selected members as one potential of (len(members) * n, d) rows."""
        def potential(x, t):
            d = x.shape[-1]
            return self.stacked(x.reshape(len(members), n, d), t.reshape(len(members), n), members).reshape(-1)
        return potential

    def parameters(self):
        return list(self.params.values())

    def unstack_into(self, models) -> None:
        with torch.no_grad():
            for e, model in enumerate(models):
                model.load_state_dict({k: v[e].detach().clone() for k, v in self.params.items()}, strict=False)


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
            draws[term] = _collocation(cfg["residual_points"], target.dim, Box(*cfg["box"]), cfg["residual_t0"],
                                       sde.T, gen, dtype, device)
    return draws


def _term_values(stack: StackedPotential, sde, cfg, term: str, members: list[int], draws) -> torch.Tensor:
    """The unweighted term for the given members, shape (len(members),)."""
    idx = torch.tensor(members)
    if term == "dsm":
        batches = [draws[e]["dsm"] for e in members]
        n = batches[0].xt.shape[0]
        joined = DSMBatch(*(torch.cat([getattr(b, f) for b in batches]) for f in ("x0", "t", "eps", "xt")))
        score = lambda x, t: gradient(stack.flat(idx, n), x, t, create_graph=True)
        return dsm_loss_terms(score, sde, joined, cfg["dsm_weighting"]).reshape(len(members), n).mean(-1)
    x = torch.cat([draws[e][term][0] for e in members])
    t = torch.cat([draws[e][term][1] for e in members])
    n = draws[members[0]][term][0].shape[0]
    potential = stack.flat(idx, n)
    if term == "log_fp":
        r2 = log_fp_residual(potential, sde, x, t, create_graph=True) ** 2
    else:
        r2 = score_fp_residual(lambda xx, tt: gradient(potential, xx, tt, create_graph=True), sde, x, t,
                               create_graph=True).pow(2).sum(-1)
    return r2.reshape(len(members), n).mean(-1)


def train_ensemble(models, methods, targets, sde, cfg: dict, seeds: list[int], labels: list[str] | None = None,
                   device=None, checkpoint=None) -> list[TrainResult]:
    """Train ``models`` (same architecture, same train config) together; updates them in place.
    ``checkpoint`` (a path) is written atomically every ``checkpoint_every`` iterations and resumed from."""
    if not all(can_ensemble(m) for m in methods):
        raise ValueError("ensemble training needs methods built from fpbench's loss terms")
    labels = labels or [f"member{e}" for e in range(len(models))]
    dtype = getattr(torch, cfg.get("dtype", "float32"))
    stack = StackedPotential(models)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    bounds = stage_boundaries(cfg["iterations"], cfg["lr_stages"])
    state = _resume(checkpoint, stack, gens)
    start, histories = state["iteration"], state["histories"] or [[] for _ in models]
    stage, lr = _lr_at(max(start - 1, 0), bounds)
    opt = torch.optim.Adam(stack.parameters(), lr=lr)
    if state["optimizer"] is not None:
        opt.load_state_dict(state["optimizer"])
    began = time.perf_counter()
    for it in range(start, cfg["iterations"]):
        new_stage, lr = _lr_at(it, bounds)
        if new_stage != stage:
            stage, opt = new_stage, torch.optim.Adam(stack.parameters(), lr=lr)
        draws = [_member_draws(targets[e], sde, methods[e], cfg, gens[e], dtype, device) for e in range(len(models))]
        values = _all_terms(stack, sde, cfg, methods, draws)
        totals = [sum(methods[e].weights[k] * v for k, v in values[e].items()) for e in range(len(models))]
        for e, total in enumerate(totals):
            if not torch.isfinite(total):
                raise TrainingError(f"case {labels[e]}: loss is {total.item()} at iteration {it} (ensemble)")
        opt.zero_grad(set_to_none=True)
        torch.stack(totals).sum().backward()
        opt.step()
        if it % cfg["log_every"] == 0 or it == cfg["iterations"] - 1:
            for e in range(len(models)):
                histories[e].append({"iteration": it, "loss": float(totals[e].detach()),
                                     **{k: float(v.detach()) for k, v in values[e].items()}})
        if checkpoint is not None and (it + 1) % cfg["checkpoint_every"] == 0:
            _save_atomic({"iteration": it + 1, "params": {k: v.detach() for k, v in stack.params.items()},
                          "optimizer": opt.state_dict(), "generators": [g.get_state() for g in gens],
                          "histories": histories}, checkpoint)
    stack.unstack_into(models)
    seconds = time.perf_counter() - began
    return [TrainResult(h, seconds / len(models), cfg["iterations"]) for h in histories]


def _resume(checkpoint, stack: StackedPotential, gens) -> dict:
    if checkpoint is None or not checkpoint.exists():
        return {"iteration": 0, "histories": None, "optimizer": None}
    state = torch.load(checkpoint, weights_only=True)
    with torch.no_grad():
        for k, v in stack.params.items():
            v.copy_(state["params"][k])
    for g, g_state in zip(gens, state["generators"]):
        g.set_state(g_state)
    return state


def _all_terms(stack, sde, cfg, methods, draws) -> list[dict[str, torch.Tensor]]:
    values: list[dict] = [{} for _ in methods]
    terms = sorted({k for m in methods for k, w in m.weights.items() if w != 0})
    for term in terms:
        members = [e for e, m in enumerate(methods) if m.weights.get(term, 0) != 0]
        for e, v in zip(members, _term_values(stack, sde, cfg, term, members, draws)):
            values[e][term] = v
    # keep each member's terms in its method's order, as Method.loss reports them
    return [{k: values[e][k] for k in m.weights if k in values[e]} for e, m in enumerate(methods)]
