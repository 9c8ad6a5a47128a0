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
from fpbench.train.loop import TrainingError, train
from fpbench.train.methods import Method, make_method

CFG = {"iterations": 1, "lr_stages": [[1e-3, 1.0]], "dsm_batch": 64, "time_law": "beta12", "t_eps": 1e-5,
       "dsm_weighting": "likelihood", "residual_points": 32, "residual_t0": 1e-5, "box": [-3.5, 3.5],
       "dtype": "float32", "log_every": 1, "checkpoint_every": 10}

BUILT_IN = [("dsm", {}, PotentialMLP), ("dsm", {}, ScoreMLP), ("fp", {"w_r": 1.0}, PotentialMLP),
            ("score_fp", {"w_s": 1.0}, ScoreMLP), ("score_fp", {"w_s": 1.0}, PotentialMLP)]


def _history(path, model, method, iterations, seed=3):
    model, cfg = copy.deepcopy(model), dict(CFG, iterations=iterations)
    sde, target = make_sde("ou"), make_target("blob")
    if path == "loop":
        return train(model, method, target, sde, cfg, seed).history
    (result,) = train_ensemble([model], [method], [target], sde, cfg, [seed])
    return result.history


def _first_step(path, model, method, seed=3):
    return _history(path, model, method, CFG["iterations"], seed)[0]


@pytest.mark.parametrize("name,params,cls", BUILT_IN, ids=[f"{n}-{c.__name__}" for n, _, c in BUILT_IN])
def test_every_built_in_method_gives_the_same_first_step_loss_on_both_paths(name, params, cls):
    torch.manual_seed(0)
    model, method = cls(2, width=16, depth=2), make_method(name, **params)
    assert can_ensemble(method, model)
    loop, jets = _first_step("loop", model, method), _first_step("ensemble", model, method)
    assert set(loop) == set(jets)
    for key in loop:
        assert jets[key] == pytest.approx(loop[key], rel=1e-4), key


def test_the_example_methods_ramp_is_the_same_on_both_paths():
    """examples/ramped_fp.py schedules its weight (``weights_at``): the ensemble trains it, and every step's
    loss is L_DSM + w(k) R~ with w(k) = min(1, k / (0.5 K)), on the loop and on the ensemble."""
    from examples.ramped_fp import RampedFP

    torch.manual_seed(0)
    model, method = PotentialMLP(2, width=16, depth=2), RampedFP(w_r=1.0)
    assert can_ensemble(method, model)
    loop, jets = _history("loop", model, method, 4), _history("ensemble", model, method, 4)
    for step, ramp in zip(range(4), (0.0, 0.5, 1.0, 1.0)):
        for hist in (loop, jets):
            row = hist[step]
            assert row["iteration"] == step
            assert row["loss"] == pytest.approx(row["dsm"] + ramp * row["log_fp"], rel=1e-6)
        for key in loop[step]:
            assert jets[step][key] == pytest.approx(loop[step][key], rel=1e-4), (step, key)


def test_a_schedule_without_a_finite_weight_for_a_term_in_use_is_a_clear_error():
    class Broken(Method):
        name = "broken"

        def __init__(self, missing: bool):
            super().__init__(dsm=1.0, log_fp=1.0)
            self.missing = missing

        def weights_at(self, iteration, iterations):  # no log_fp weight, or NaN from step 1 on
            return {"dsm": 1.0} if self.missing else {"dsm": 1.0, "log_fp": float("nan") if iteration else 1.0}

    model = PotentialMLP(2, width=16, depth=2)
    with pytest.raises(TrainingError, match=r"weights_at\(0, 1\) returned \{'dsm': 1.0\}; it needs a finite"):
        _history("loop", model, Broken(missing=True), 1)
    (failed,) = train_ensemble([copy.deepcopy(model)], [Broken(missing=True)], [make_target("blob")], make_sde("ou"),
                               dict(CFG, iterations=2), [3])  # the member fails alone, with the same reason
    assert isinstance(failed, TrainingError) and "weights_at(0, 2) returned {'dsm': 1.0}" in str(failed)
    with pytest.raises(TrainingError, match=r"weights_at\(1, 2\) returned .*nan"):
        _history("loop", model, Broken(missing=False), 2)


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
