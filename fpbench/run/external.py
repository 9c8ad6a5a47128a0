"""Bring your own model: a score model trained outside fpbench, evaluated with every metric fpbench
computes for its own (W2^2 of Tables 1-3 with floors and intervals, R~ for potentials, R^s, L_DSM, the
curl, the convergence evidence, the exact-score error budget), beside the built-in baseline of the same
target.

The protocol (``load_external``): ``spec`` is

- ``module:factory`` or ``path/to/file.py:factory``: ``factory()`` (or ``factory(seed=K)`` when it takes
  a ``seed``) returns an object with ``score(x, t) -> (n, d)`` for x of shape (n, d) and t of shape (n,),
  torch tensors, and optionally ``potential(x, t) -> (n,)`` (then R~, eq. 20, is measured too);
- a TorchScript file (``.pt``, ``.pth``, ``.ts``) whose module has a ``score`` method (``@torch.jit.export``)
  and optionally ``potential``.

The score must be differentiable in x and t by torch (R^s and the curl take its derivatives). The model
is evaluated under the settings of the suite's baseline case for the target, scale and seed
(``external_case``); its record is stored like any case's, keyed by the spec and a hash of the file.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import inspect
from pathlib import Path

import torch
from torch import nn

from ..core.errors import FpbenchError
from ..core.imports import load_attr
from .suite import Case, expand, load_suite

TORCHSCRIPT = (".pt", ".pth", ".ts")


class ExternalModelError(FpbenchError):
    """A model spec that cannot be loaded, or an object that does not follow the protocol."""


class ExternalModel(nn.Module):
    """A user's object behind fpbench's model protocol: ``score(x, t, create_graph)`` and, when the
    object has one, ``potential(x, t)``."""

    def __init__(self, obj, dim: int):
        super().__init__()
        self.obj, self.dim = obj, dim
        self.is_potential = callable(getattr(obj, "potential", None))

    def potential(self, x: torch.Tensor, t) -> torch.Tensor:
        return self.obj.potential(x, _rows(t, x))

    def score(self, x: torch.Tensor, t, create_graph: bool = False) -> torch.Tensor:
        s = self.obj.score(x, _rows(t, x))
        return s if create_graph else s.detach()

    def forward(self, x, t):
        return self.score(x, t)


def _rows(t, x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[:-1])


def load_external(spec: str, seed: int = 0):
    """The user's model object for ``spec`` (module docstring), checked on a small batch."""
    if spec.endswith(TORCHSCRIPT):
        if not Path(spec).exists():
            raise ExternalModelError(f"no TorchScript file {spec}")
        try:
            obj = torch.jit.load(spec, map_location="cpu")
        except RuntimeError as err:
            raise ExternalModelError(f"{spec} is not a TorchScript file torch can load: {str(err)[:200]}") from None
    else:
        if ":" not in spec:
            raise ExternalModelError(f"model {spec!r}: expected module:factory, file.py:factory or a TorchScript "
                                     f"file ({', '.join(TORCHSCRIPT)})")
        try:
            factory = load_attr(spec, "model")
        except ValueError as err:
            raise ExternalModelError(str(err)) from None
        takes_seed = "seed" in inspect.signature(factory).parameters
        try:
            obj = factory(seed=seed) if takes_seed else factory()
        except Exception as err:  # the user's code: said in one line, its traceback chained for --debug
            raise ExternalModelError(f"model {spec!r}: the factory raised {type(err).__name__}: {err}") from err
    if not callable(getattr(obj, "score", None)):
        raise ExternalModelError(f"model {spec!r}: the object has no score(x, t) method")
    return obj


def check_external(spec: str, case: Case) -> None:
    """Load the user's model for ``case``'s target and seed and check its protocol (``check_protocol``): a
    clear ExternalModelError now, before anything is trained or sampled."""
    from ..core.targets import make_target

    target = make_target(case.config["target"]["name"], **case.config["target"]["params"])
    check_protocol(ExternalModel(load_external(spec, case.config["seed"]), target.dim), spec)


def check_protocol(model: ExternalModel, spec: str) -> None:
    """One call on a small batch: the score must be (n, d) and finite, a potential (n,)."""
    x, t = torch.zeros(4, model.dim), torch.full((4,), 0.5)
    try:
        s = model.score(x, t)
    except Exception as err:  # the user's code: any failure is theirs, reported as such
        raise ExternalModelError(f"model {spec!r}: score(x, t) raised {type(err).__name__}: {err}") from None
    if tuple(s.shape) != (4, model.dim):
        raise ExternalModelError(f"model {spec!r}: score(x, t) must return shape (n, {model.dim}) for x of shape "
                                 f"(n, {model.dim}); got {tuple(s.shape)}")
    if not torch.isfinite(s).all():
        raise ExternalModelError(f"model {spec!r}: score(x, t) returned non-finite values (NaN or inf) at x = 0, "
                                 "t = 0.5")
    if model.is_potential and tuple(model.potential(x, t).shape) != (4,):
        raise ExternalModelError(f"model {spec!r}: potential(x, t) must return shape (n,)")


def spec_digest(spec: str) -> str:
    """A hash of the model's file (the .py or TorchScript file; a module's source file), so that a changed
    model is a new case."""
    where = spec if spec.endswith(TORCHSCRIPT) else spec.rsplit(":", 1)[0]
    path = Path(where) if where.endswith(TORCHSCRIPT + (".py",)) else None
    if path is None:
        found = importlib.util.find_spec(where)
        path = Path(found.origin) if found and found.origin else None
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path and path.exists() else "unknown"


def baseline_case(suite: str, scale: str, target: str, seed: int) -> Case:
    """The suite's baseline for the target and seed: its first case with w_R = 0 (or no w_R)."""
    data = load_suite(suite)
    if target not in data["suite"]["targets"]:
        raise ExternalModelError(f"unknown target {target!r} for suite {data['suite']['name']!r}; its targets: "
                                 f"{', '.join(data['suite']['targets'])}")
    for case in expand(data, scale, seeds=seed + 1):
        if (case.config["target"]["name"] == target and case.config["seed"] == seed
                and case.config["method"]["params"].get("w_r", 0.0) == 0.0):
            return case
    raise ExternalModelError(f"suite {suite!r} has no baseline case (w_R = 0) for target {target!r} at scale {scale!r}")


def external_case(spec: str, suite: str, scale: str, target: str, seed: int) -> Case:
    """The baseline's case with the model replaced by the user's (no training): the same sampling, metric
    and residual settings, so the two are compared on equal terms."""
    config = copy.deepcopy(baseline_case(suite, scale, target, seed).config)
    config["model"] = {"kind": "external", "spec": spec, "sha256": spec_digest(spec)}
    config["method"] = {"name": "external", "params": {}}
    return Case(config)
