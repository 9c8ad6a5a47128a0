"""Training methods: a method builds the loss from named terms with weights.

Built in: ``dsm`` (the baseline, L_DSM alone), ``fp`` (the paper's family, eq. in section 4:
L_DSM + w_R * R~(theta, phi_theta, 0)), ``score_fp`` (L_DSM + w * R^s, eq. 32, for score models) and
``warm_fp`` (``fp`` started from the trained DSM baseline: a method, never the paper's protocol).
A method of your own is one class, referenced from a suite file as ``"package.module:ClassName"``
or registered by name in the ``fpbench.methods`` entry-point group:
subclass ``Method`` and override ``loss_terms`` (or add terms to ``TERMS``); the runner, store and
report do not change. Methods made of fpbench's own terms train as ensembles on jets; any other
(an added term, an overridden ``loss``) trains by the per-model loop, which computes it as written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType

import torch

from ..core.errors import FpbenchError
from ..core.losses import dsm_batch, dsm_loss
from ..core.residuals import Box, log_fp_residual_mc, score_fp_residual_mc


@dataclass
class TrainContext:
    """What a loss term may use at one iteration."""

    sde: object
    target: object
    x0: torch.Tensor  # a fresh batch from p0
    generator: torch.Generator
    config: dict = field(default_factory=dict)  # the case's resolved train config
    iteration: int = 0  # this step, from 0
    iterations: int = 0  # all steps of the run


def _dsm_term(model, ctx: TrainContext) -> torch.Tensor:
    cfg = ctx.config
    batch = dsm_batch(ctx.x0, ctx.sde, cfg["time_law"], cfg["t_eps"], ctx.generator)
    return dsm_loss(lambda x, t: model.score(x, t, create_graph=True), ctx.sde, batch, cfg["dsm_weighting"])


def _collocation_kwargs(ctx: TrainContext) -> dict:
    cfg = ctx.config
    return dict(d=ctx.target.dim, n=cfg["residual_points"], box=Box(*cfg["box"]), t0=cfg["residual_t0"],
                generator=ctx.generator, dtype=ctx.x0.dtype, device=ctx.x0.device, create_graph=True)


def _log_fp_term(model, ctx: TrainContext) -> torch.Tensor:
    if not getattr(model, "is_potential", False):
        raise FpbenchError("the log-FP residual (eq. 20) needs a potential model (model kind 'potential')")
    return log_fp_residual_mc(model.potential, ctx.sde, **_collocation_kwargs(ctx))


def _score_fp_term(model, ctx: TrainContext) -> torch.Tensor:
    return score_fp_residual_mc(lambda x, t: model.score(x, t, create_graph=True), ctx.sde, **_collocation_kwargs(ctx))


TERMS = {"dsm": _dsm_term, "log_fp": _log_fp_term, "score_fp": _score_fp_term}
# The terms as fpbench defines them. The ensemble path (fpbench.train.ensemble) computes exactly these, by
# jets; a term added to TERMS, or a built-in name bound to another function, is computed by the
# per-model loop only (``uses_builtin_terms``), never replaced by a jet of another term.
BUILTIN_TERMS = MappingProxyType(dict(TERMS))
# The results column that measures each regulariser on the trained model (fpbench.run.schema): a method
# whose one non-DSM term is one of these is a regularised family whose weight plays w_R in claims C1-C5.
REGULARISER_RESIDUALS = MappingProxyType({"log_fp": "log_fp_residual", "score_fp": "score_fp_residual"})


class Method:
    """Loss = sum_k weights[k] * term_k. Terms with weight 0 are not computed. A schedule of the weights over
    training (a ramp, a warm-up) is ``weights_at``; both training paths honour it."""

    name = "custom"

    def __init__(self, **weights: float):
        unknown = set(weights) - set(TERMS)
        if unknown:
            raise FpbenchError(f"unknown loss term(s) {sorted(unknown)} for method {self.name!r}; "
                               f"known: {sorted(TERMS)}")
        self.weights = {k: float(v) for k, v in weights.items()}

    def loss_terms(self, model, ctx: TrainContext) -> dict[str, torch.Tensor]:
        """Unweighted values of the terms in use."""
        return {k: TERMS[k](model, ctx) for k, w in self.weights.items() if w != 0}

    def uses_builtin_terms(self) -> bool:
        """Whether every term in use is one of fpbench's own, as defined in ``BUILTIN_TERMS``."""
        return all(TERMS.get(k) is BUILTIN_TERMS.get(k) is not None for k, w in self.weights.items() if w != 0)

    def weights_at(self, iteration: int, iterations: int) -> dict[str, float]:
        """The terms' weights at step ``iteration`` (from 0) of ``iterations``: ``weights`` at every step.
        Override it for a schedule; the terms in use stay those with a nonzero weight in ``weights``
        (one weighted 0 at some step is computed there, and counts for nothing)."""
        return self.weights

    def step_weights(self, iteration: int, iterations: int) -> dict[str, float]:
        """``weights_at``, checked: a weight for every term in use, each a finite number."""
        returned = self.weights_at(iteration, iterations)
        used = {k for k, w in self.weights.items() if w != 0}
        try:
            weights = {k: float(w) for k, w in returned.items()}
        except (TypeError, ValueError, AttributeError):
            weights = {}
        if not used <= set(weights) or not all(math.isfinite(w) for w in weights.values()):
            raise FpbenchError(f"method {self.name!r}: weights_at({iteration}, {iterations}) returned {returned!r}; "
                               f"it needs a finite number for each term in use ({sorted(used)})")
        return weights

    def loss(self, model, ctx: TrainContext) -> tuple[torch.Tensor, dict[str, float]]:
        terms = self.loss_terms(model, ctx)
        weights = self.step_weights(ctx.iteration, ctx.iterations)
        total = sum(weights.get(k, 1.0) * v for k, v in terms.items())
        return total, {k: float(v.detach()) for k, v in terms.items()}


class DSM(Method):
    """The baseline: L_DSM (eq. 5) alone."""

    name = "dsm"

    def __init__(self, dsm: float = 1.0):
        super().__init__(dsm=dsm)


class FokkerPlanck(Method):
    """The paper's family: L_DSM + w_R * R~(theta, phi_theta, 0) (section 4)."""

    name = "fp"

    def __init__(self, w_r: float = 0.0, dsm: float = 1.0):
        super().__init__(dsm=dsm, log_fp=w_r)


class ScoreFokkerPlanck(Method):
    """L_DSM + w * R^s(theta, s_theta, 0) (eq. 32), for score or potential models."""

    name = "score_fp"

    def __init__(self, w_s: float = 0.0, dsm: float = 1.0):
        super().__init__(dsm=dsm, score_fp=w_s)


class WarmStartFP(FokkerPlanck):
    """A warm start (fpbench's, not the paper's protocol): L_DSM + w_R R~ trained from the weights of the
    DSM baseline of the same target, seed, model and schedule (``warm_start_from``: the paper's w_R = 0
    case), for the case's own schedule. The baseline's steps are shared, not repeated; w_R = 0 is the
    baseline trained on by DSM for as many steps, the fair reference for the others."""

    name = "warm_fp"
    warm_start_from = {"name": "fp", "params": {"w_r": 0.0}}


METHODS = {"dsm": DSM, "fp": FokkerPlanck, "score_fp": ScoreFokkerPlanck, "warm_fp": WarmStartFP}


ENTRY_POINT_GROUP = "fpbench.methods"


def plugin_methods() -> dict:
    """Methods that installed packages register in the ``fpbench.methods`` entry-point group
    (``[project.entry-points."fpbench.methods"] mine = "mypkg.methods:MyMethod"``), by name."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _load_class(name: str):
    """'package.module:Class' (importable, or under the working directory) or 'path/file.py:Class'."""
    from ..core.imports import load_attr

    return load_attr(name, "method")


def make_method(name: str, **params) -> Method:
    """A built-in method by name, a method registered in the ``fpbench.methods`` entry-point group,
    or a user's class given as 'package.module:ClassName'."""
    plugins = {} if ":" in name or name in METHODS else plugin_methods()
    if name in plugins:
        try:
            cls = plugins[name].load()
        except (ImportError, AttributeError) as err:
            raise FpbenchError(f"cannot load method {name!r} ({plugins[name].value}): {err}") from None
    elif ":" in name:
        cls = _load_class(name)
    elif name in METHODS:
        cls = METHODS[name]
    else:
        known = ", ".join(sorted(METHODS) + sorted(plugins))
        raise FpbenchError(f"unknown method {name!r}; known: {known} or 'module:Class'")
    try:
        return cls(**params)
    except TypeError as err:
        raise FpbenchError(f"bad parameters for method {name!r}: {err}") from None
