"""A finite loss that climbs by orders of magnitude fails its case at training time, with the reason,
on the per-model loop and on the ensemble path (one member alone)."""

import pytest
import torch

from fpbench.core.models import PotentialMLP
from fpbench.core.sde import make_sde
from fpbench.core.targets import make_target
from fpbench.train import ensemble
from fpbench.train.ensemble import train_ensemble
from fpbench.train.loop import DIVERGENCE_FACTOR, TrainingError, loss_failure, train
from fpbench.train.methods import Method, make_method

CFG = {"iterations": 12, "lr_stages": [[1e-3, 1.0]], "dsm_batch": 32, "time_law": "beta12", "t_eps": 1e-5,
       "dsm_weighting": "likelihood", "residual_points": 16, "residual_t0": 1e-5, "box": [-3.5, 3.5],
       "dtype": "float32", "log_every": 1, "checkpoint_every": 100}


def test_the_rule_flags_only_a_climb_of_orders_of_magnitude():
    assert loss_failure(2.0 * DIVERGENCE_FACTOR, 1.0) and not loss_failure(0.5 * DIVERGENCE_FACTOR, 1.0)
    assert not loss_failure(3.0, 1e-9)  # a tiny first loss: the bound is at least DIVERGENCE_FACTOR
    assert not loss_failure(5.0, None)


class Exploding(Method):
    """DSM times 10^iteration: finite, so above 10^6 x its first value by iteration 6 or 7."""

    def loss(self, model, ctx):
        total, terms = super().loss(model, ctx)
        return total * 10.0 ** ctx.iteration, terms


def test_the_loop_fails_a_diverging_case_when_it_diverges():
    torch.manual_seed(0)
    with pytest.raises(TrainingError, match="case x: training diverged: loss .* at iteration [67] "):
        train(PotentialMLP(2, width=8, depth=1), Exploding(dsm=1.0), make_target("blob"), make_sde("ou"), CFG, 0, "x")


def test_an_ensemble_member_that_diverges_fails_alone(monkeypatch):
    all_terms = ensemble._all_terms
    counter = {"it": 0}

    def second_member_explodes(models, sde, cfg, methods, draws, alive, chunk, compiled):
        values = all_terms(models, sde, cfg, methods, draws, alive, chunk, compiled)
        if 1 in values:
            values[1] = {k: v * 10.0 ** counter["it"] for k, v in values[1].items()}
        counter["it"] += 1
        return values

    monkeypatch.setattr(ensemble, "_all_terms", second_member_explodes)
    torch.manual_seed(0)
    models = [PotentialMLP(2, width=8, depth=1) for _ in range(2)]
    results = train_ensemble(models, [make_method("dsm")] * 2, [make_target("blob")] * 2, make_sde("ou"), CFG,
                             [0, 1], labels=["calm", "wild"])
    assert not isinstance(results[0], Exception) and len(results[0].history) == CFG["iterations"]
    assert isinstance(results[1], TrainingError) and "case wild: training diverged" in str(results[1])
    assert "at iteration 6" in str(results[1]) or "at iteration 7" in str(results[1])
