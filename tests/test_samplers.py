"""Samplers with the exact score: orders of convergence and W2 within floor + discretisation."""

import math

import numpy as np
import pytest
import torch

from fpbench.core.metrics import grid_histogram, grid_noise_floor, grid_w2_from_weights
from fpbench.core.models import ExactScore
from fpbench.core.samplers import (
    euler_maruyama,
    euler_ode,
    heun_ode,
    heun_sde,
    reference_ode,
    refined_grid,
    sample_pair,
    uniform_grid,
)
from fpbench.core.sde import make_sde
from fpbench.core.targets import make_target

from .conftest import gen


def test_refined_grid_is_the_authors_grid():
    ts = refined_grid(10.0, 800)
    steps = (ts[:-1] - ts[1:]).numpy()
    assert len(steps) == 800 - 10 + 100
    np.testing.assert_allclose(steps[:790], 10 / 800, rtol=1e-12)
    np.testing.assert_allclose(steps[790:], 10 / 8000, rtol=1e-9)
    assert ts[0] == 10.0 and ts[-1] == 0.0


def _oracle(name="blob"):
    sde = make_sde("ou")
    return sde, ExactScore(make_target(name), sde)


def _slope(ns, errors):
    return -np.polyfit(np.log(ns), np.log(errors), 1)[0]


@pytest.mark.parametrize("sampler,order", [(euler_ode, 1.0), (heun_ode, 2.0)])
def test_ode_discretisation_error_falls_at_the_order_of_the_scheme(sampler, order):
    sde, oracle = _oracle()
    x_T = sde.prior_sample(400, 2, gen(0), dtype=torch.float64)
    eps = 0.05
    ref = reference_ode(oracle.score, sde, x_T, eps, rtol=1e-11, atol=1e-11)
    ns = [80, 160, 320, 640]
    errors = [((sampler(oracle.score, sde, x_T, uniform_grid(sde.T, n, eps)) - ref) ** 2).sum(-1).mean().sqrt().item()
              for n in ns]
    assert abs(_slope(ns, errors) - order) < 0.3, errors


def _brownian_path(n_fine, shape, h_fine, seed):
    return math.sqrt(h_fine) * torch.randn(n_fine, *shape, generator=gen(seed), dtype=torch.float64)


@pytest.mark.parametrize("sampler", [euler_maruyama, heun_sde])
def test_sde_strong_error_falls_at_order_one_for_additive_noise(sampler):
    sde, oracle = _oracle()
    x_T = sde.prior_sample(400, 2, gen(1), dtype=torch.float64)
    eps, n_fine = 0.05, 2560
    fine_dw = _brownian_path(n_fine, x_T.shape, (sde.T - eps) / n_fine, 2)
    ref = sampler(oracle.score, sde, x_T, uniform_grid(sde.T, n_fine, eps), increments=fine_dw, noise_last_step=True)
    ns = [40, 80, 160, 320]
    errors = []
    for n in ns:
        dw = fine_dw.reshape(n, n_fine // n, *x_T.shape).sum(1)  # the same path, coarser steps
        x = sampler(oracle.score, sde, x_T, uniform_grid(sde.T, n, eps), increments=dw, noise_last_step=True)
        errors.append(((x - ref) ** 2).sum(-1).mean().sqrt().item())
    assert abs(_slope(ns, errors) - 1.0) < 0.25, errors


def test_heun_sde_has_a_smaller_error_constant_than_euler_maruyama():
    sde, oracle = _oracle()
    x_T = sde.prior_sample(400, 2, gen(3), dtype=torch.float64)
    n_fine, eps = 1280, 0.05
    dw = _brownian_path(n_fine, x_T.shape, (sde.T - eps) / n_fine, 4)
    ref = heun_sde(oracle.score, sde, x_T, uniform_grid(sde.T, n_fine, eps), increments=dw, noise_last_step=True)
    coarse = dw.reshape(80, 16, *x_T.shape).sum(1)
    err = {s.__name__: ((s(oracle.score, sde, x_T, uniform_grid(sde.T, 80, eps), increments=coarse,
                           noise_last_step=True) - ref) ** 2).sum(-1).mean().item() for s in (euler_maruyama, heun_sde)}
    assert err["heun_sde"] < err["euler_maruyama"]


@pytest.mark.parametrize("name", ["blob", "checker"])
def test_exact_score_samples_stay_within_floor_plus_discretisation(name):
    sde, oracle = _oracle(name)
    n = 4000
    ts = refined_grid(sde.T, 200)
    x_ode, x_sde = sample_pair(oracle.score, sde, n, 2, ts, seed=5, dtype=torch.float64)
    x_T = sde.prior_sample(n, 2, torch.Generator().manual_seed(5 * 1_000_003), dtype=torch.float64)
    # Discretisation: the paired mean squared displacement from the adaptive reference is a coupling,
    # so it bounds W2^2(p_Euler, p_ref) from above.
    disc = ((x_ode - reference_ode(oracle.score, sde, x_T, 0.0, rtol=1e-7, atol=1e-7)) ** 2).sum(-1).mean().item()
    floor = grid_noise_floor(lambda k, g: oracle.target.sample(k, g, dtype=torch.float64), n, reps=8, seed=6)
    p0 = grid_histogram(oracle.target.sample(n, gen(7), dtype=torch.float64))
    bound = (math.sqrt(floor.q95) + math.sqrt(disc)) ** 2
    h_ode, h_sde = grid_histogram(x_ode), grid_histogram(x_sde)
    for label, value in [("ode-p0", grid_w2_from_weights(h_ode, p0)), ("sde-p0", grid_w2_from_weights(h_sde, p0)),
                         ("ode-sde", grid_w2_from_weights(h_ode, h_sde))]:
        assert value <= bound, (label, value, floor, disc)


def test_sample_pair_shares_prior_points_and_is_chunk_independent_in_size():
    sde, oracle = _oracle()
    ts = refined_grid(sde.T, 20)
    a_ode, a_sde = sample_pair(oracle.score, sde, 10, 2, ts, seed=1, chunk=10, dtype=torch.float64)
    b_ode, b_sde = sample_pair(oracle.score, sde, 10, 2, ts, seed=1, chunk=10, dtype=torch.float64)
    assert torch.equal(a_ode, b_ode) and torch.equal(a_sde, b_sde)
    c_ode, _ = sample_pair(oracle.score, sde, 10, 2, ts, seed=1, chunk=4, dtype=torch.float64)
    assert c_ode.shape == (10, 2)
    with pytest.raises(ValueError, match="unknown sampler scheme"):
        sample_pair(oracle.score, sde, 10, 2, ts, seed=1, scheme="rk4")


def test_sampling_a_free_score_network_keeps_no_graph():
    # ScoreMLP's output is tied to its weights; a sampler must not keep every step's graph alive
    # (60k particles x 200 steps exhausted 24 GB before the samplers ran under no_grad).
    from fpbench.core.models import PotentialMLP, ScoreMLP

    sde, ts = make_sde("ou"), uniform_grid(10.0, 5)
    x_T = torch.randn(8, 2, dtype=torch.float64)
    for model in (ScoreMLP().double(), PotentialMLP().double()):
        for sampler in (euler_ode, heun_ode):
            assert not sampler(model.score, sde, x_T, ts).requires_grad
        for sampler in (euler_maruyama, heun_sde):
            assert not sampler(model.score, sde, x_T, ts, torch.Generator().manual_seed(0)).requires_grad


def test_a_coupling_bound_says_when_a_few_diverging_trajectories_make_it():
    """99 coupled pairs 0.01 apart inside the box and one that diverged to 5,000: the bound (the mean) is
    that one trajectory's; the median, the share outside the box and the bound inside it say so."""
    from fpbench.run.evaluate import coupling_summary

    a = torch.zeros(100, 2)
    b = torch.full((100, 2), 0.01)
    b[7] = torch.tensor([5000.0, 0.0])
    out = coupling_summary("disc_ode", (a, b), -3.5, 3.5)
    assert out["disc_ode"] == pytest.approx((99 * 2e-4 + 5000.0**2) / 100)
    assert out["disc_ode_median"] == pytest.approx(2e-4) and out["disc_ode_outside"] == pytest.approx(0.01)
    assert out["disc_ode_inside"] == pytest.approx(2e-4)
    assert coupling_summary("disc_ode", None, -3.5, 3.5)["disc_ode"] != coupling_summary("disc_ode", None, 0, 1)[
        "disc_ode"]  # NaN: a reference that could not finish gives no bound
