"""One contract for loss terms: a method's first-step loss is the same on the per-model loop
(``fpbench.train.loop``, autograd) and on the ensemble path (``fpbench.train.ensemble``, jets), or the
ensemble path refuses the method and the loop trains it. A user's term is never replaced."""

import copy

import pytest
import torch

from fpbench.core.models import PotentialMLP, ScoreMLP
from fpbench.core.sde import make_sde
from fpbench.core.targets import make_target
from fpbench.run.pipeline import ensemble_key
from fpbench.run.suite import expand, load_suite
from fpbench.train import methods
from fpbench.train.ensemble import can_ensemble, train_ensemble
from fpbench.train.loop import train
from fpbench.train.methods import Method, make_method

CFG = {"iterations": 1, "lr_stages": [[1e-3, 1.0]], "dsm_batch": 64, "time_law": "beta12", "t_eps": 1e-5,
       "dsm_weighting": "likelihood", "residual_points": 32, "residual_t0": 1e-5, "box": [-3.5, 3.5],
       "dtype": "float32", "log_every": 1, "checkpoint_every": 10}

BUILT_IN = [("dsm", {}, PotentialMLP), ("dsm", {}, ScoreMLP), ("fp", {"w_r": 1.0}, PotentialMLP),
            ("score_fp", {"w_s": 1.0}, ScoreMLP), ("score_fp", {"w_s": 1.0}, PotentialMLP)]


def _first_step(path, model, method, seed=3):
    model = copy.deepcopy(model)
    sde, target = make_sde("ou"), make_target("blob")
    if path == "loop":
        return train(model, method, target, sde, CFG, seed).history[0]
    (result,) = train_ensemble([model], [method], [target], sde, CFG, [seed])
    return result.history[0]


@pytest.mark.parametrize("name,params,cls", BUILT_IN, ids=[f"{n}-{c.__name__}" for n, _, c in BUILT_IN])
def test_every_built_in_method_gives_the_same_first_step_loss_on_both_paths(name, params, cls):
    torch.manual_seed(0)
    model, method = cls(2, width=16, depth=2), make_method(name, **params)
    assert can_ensemble(method, model)
    loop, jets = _first_step("loop", model, method), _first_step("ensemble", model, method)
    assert set(loop) == set(jets)
    for key in loop:
        assert jets[key] == pytest.approx(loop[key], rel=1e-4), key


def test_the_example_method_is_refused_by_the_ensemble_and_trained_by_the_loop():
    from examples.ramped_fp import RampedFP

    torch.manual_seed(0)
    model, method = PotentialMLP(2, width=16, depth=2), RampedFP(w_r=1.0)
    assert not can_ensemble(method, model)  # it overrides loss(): only the loop computes its weighting
    with pytest.raises(ValueError, match="ensemble training needs"):
        _first_step("ensemble", model, method)
    ramped = _first_step("loop", model, method)
    plain = _first_step("loop", model, make_method("fp", w_r=1.0))
    assert ramped["log_fp"] == plain["log_fp"] and ramped["loss"] == plain["dsm"]  # weight 0 at step 0


def test_a_users_added_term_is_computed_by_the_loop_never_replaced_by_a_built_in_jet(monkeypatch):
    monkeypatch.setitem(methods.TERMS, "zero", lambda model, ctx: 0.0 * model.score(ctx.x0, ctx.x0[:, 0] + 1).sum())

    class WithZero(Method):
        def __init__(self):
            super().__init__(dsm=1.0, zero=1.0)

    torch.manual_seed(0)
    model, method = PotentialMLP(2, width=16, depth=2), WithZero()
    assert not method.uses_builtin_terms() and not can_ensemble(method, model)
    with pytest.raises(ValueError, match="ensemble training needs"):
        _first_step("ensemble", model, method)
    assert _first_step("loop", model, method)["zero"] == 0.0


def test_a_built_in_name_bound_to_another_function_is_not_taken_for_the_built_in(monkeypatch):
    monkeypatch.setitem(methods.TERMS, "log_fp", lambda model, ctx: torch.zeros(()))
    model, method = PotentialMLP(2, width=16, depth=2), make_method("fp", w_r=1.0)
    assert not can_ensemble(method, model)
    case = next(c for c in expand(load_suite("paper"), "smoke") if c.config["method"]["params"].get("w_r"))
    assert ensemble_key(case) is None  # the runner trains such a case one by one
