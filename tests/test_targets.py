"""Exact densities against independent computations, and samplers against the densities."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from fpbench.core.sde import make_sde
from fpbench.core.targets import DENSITY_TARGETS, TARGETS, make_target

from .conftest import gen


def _rings_reference_log_prob(target, rho, m, s):
    """log p by mpmath quadrature (30 digits) of the radial integral with I0: independent of GH."""
    import mpmath as mp

    mp.mp.dps = 30
    total = mp.mpf(0)
    for big_r, w in zip(target.radii.numpy(), target.log_weights.exp().numpy()):
        sr = target.radial_std
        f = lambda r, R=big_r: (mp.npdf(r, R, sr) * mp.exp(-(rho**2 + m**2 * r**2) / (2 * s * s))
                                * mp.besseli(0, m * rho * r / s**2) / (2 * mp.pi * s * s))
        pts = sorted({-big_r - 15 * sr, 0.0, big_r, big_r + 15 * sr, -rho / m, *np.linspace(0, rho / m + 1, 25)})
        total += w * mp.quad(f, pts)
    return float(mp.log(total))


@pytest.mark.parametrize("noise,tol", [(0.02, 1e-8), (0.05, 1e-10), (0.2, 1e-10), (0.7, 1e-10)])
def test_rings_log_prob_matches_adaptive_quadrature(noise, tol):
    """The accuracy stated in Rings' docstring, at noise level sigma(t) / m(t); small noise comes
    with m(t) near 1 in every SDE here."""
    target = make_target("circles2")
    rng = np.random.default_rng(0)
    f64 = dict(dtype=torch.float64)
    for _ in range(6):
        x = rng.uniform(-3.5, 3.5, size=2) * (0.05 if rng.random() < 0.25 else 1.0)
        m = float(rng.uniform(0.9, 1.0))
        ours = target._log_prob_t(torch.tensor(x[None], **f64), torch.tensor([m], **f64),
                                  torch.tensor([noise * m], **f64)).item()
        ref = _rings_reference_log_prob(target, float(np.hypot(*x)), m, noise * m)
        assert abs(ours - ref) <= tol, (x, m, ours, ref)


def test_checker_log_prob_matches_quadrature_of_the_heat_kernel():
    target, sde = make_target("checker"), make_sde("ou")
    rng = np.random.default_rng(1)
    for _ in range(8):
        x, t = rng.uniform(-3.5, 3.5, size=2), float(rng.uniform(0.05, 3))
        m, s = math.exp(-t), math.sqrt(0.5 * (1 - math.exp(-2 * t)))
        total = 0.0
        for low in target.lower.numpy():
            per_axis = [integrate.quad(lambda y, j=j: stats.norm.pdf(x[j], m * y, s), low[j], low[j] + target.side,
                                       epsabs=0, epsrel=1e-12)[0] / target.side for j in range(2)]
            total += np.prod(per_axis) / len(target.lower)
        ours = target.log_prob(torch.tensor(x[None]), torch.tensor([t], dtype=torch.float64), sde).item()
        assert ours == pytest.approx(math.log(total), abs=1e-9)


def test_blob_log_prob_matches_scipy_mixture():
    target, sde = make_target("blob"), make_sde("vp")
    x, t = np.array([[0.3, -1.2], [2.0, 2.5]]), 0.3
    m, s = (v.item() for v in sde.marginal(torch.tensor(t, dtype=torch.float64)))
    ref = np.log(sum(stats.multivariate_normal(m * mu, m**2 * var + s**2).pdf(x) / 9
                     for mu, var in zip(target.means.numpy(), target.variances[:, 0].numpy())))
    ours = target.log_prob(torch.tensor(x), torch.tensor([t, t], dtype=torch.float64), sde).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


@pytest.mark.parametrize("name", ["blob", "circles2", "checker"])
@pytest.mark.parametrize("t", [0.0, 0.1, 2.0])
def test_density_integrates_to_one(name, t):
    target, sde = make_target(name), make_sde("ou")
    h = 0.02 if t == 0 else 0.04  # the midpoint rule converges spectrally for the smooth t > 0 densities
    axis = torch.arange(-6 + h / 2, 6, h, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    mass = (target.log_prob(grid, torch.full((len(grid),), t, dtype=torch.float64), sde).exp().sum() * h * h).item()
    assert mass == pytest.approx(1.0, abs=2e-3 if t == 0 else 1e-6)


def test_direct_formula_at_t0_is_the_limit_of_the_diffused_density():
    sde = make_sde("ou")
    x = torch.tensor([[1.2, 0.7], [-2.0, 1.9], [0.1, 2.8]], dtype=torch.float64)
    for name in ("blob", "circles2"):
        target = make_target(name)
        at_zero = target.log_prob(x, torch.zeros(3, dtype=torch.float64), sde)
        near_zero = target.log_prob(x, torch.full((3,), 1e-4, dtype=torch.float64), sde)
        torch.testing.assert_close(at_zero, near_zero, atol=5e-3, rtol=0)


def test_checker_direct_density_is_uniform_on_squares():
    target = make_target("checker")
    inside = target.lower + 0.5 * target.side
    outside = torch.tensor([[-0.75, -2.25], [2.25, -2.25]], dtype=torch.float64)  # two empty squares
    logp = target.log_prob0(torch.cat([inside, outside]))
    assert torch.allclose(logp[:8], torch.full((8,), -math.log(8 * 1.5**2), dtype=torch.float64))
    assert torch.isinf(logp[8:]).all()


# ----- samplers against the exact density: chi-square on a grid ---------------------------------

def _bin_probabilities(log_prob, edges, sub=8):
    """P(bin) by midpoint quadrature on a sub-grid of each bin (rows: x bins, cols: y bins)."""
    fine = torch.cat([torch.linspace(a, b, sub + 1, dtype=torch.float64)[:-1] for a, b in zip(edges[:-1], edges[1:])])
    h = (edges[1] - edges[0]) / sub
    centres = fine + h / 2
    dens = log_prob(torch.cartesian_prod(centres, centres)).exp().reshape(len(centres), len(centres)) * h * h
    nb = len(edges) - 1
    return dens.reshape(nb, sub, nb, sub).sum((1, 3)).numpy()


def _chi_square_pvalue(samples, probs, edges):
    counts, _, _ = np.histogram2d(samples[:, 0], samples[:, 1], bins=[edges, edges])
    n = len(samples)
    expected = probs / probs.sum() * n * probs.sum()  # mass outside the grid is a bin of its own
    obs, exp = counts.ravel(), expected.ravel()
    keep = exp >= 5
    obs_all = np.append(obs[keep], n - obs[keep].sum())
    exp_all = np.append(exp[keep], n - exp[keep].sum())
    return stats.chisquare(obs_all, exp_all).pvalue


EDGES = np.linspace(-4.5, 4.5, 31)


@pytest.mark.parametrize("name", ["blob", "circles2", "checker"])
def test_samples_fit_the_exact_density_at_t0(name):
    target, sde = make_target(name), make_sde("ou")
    x = target.sample(40_000, gen(11), dtype=torch.float64).numpy()
    t0 = 1e-3 if name != "checker" else 0.0  # smooth the ring and blob bins slightly for the sub-grid
    probs = _bin_probabilities(lambda z: target.log_prob(z, torch.full((len(z),), t0, dtype=torch.float64), sde),
                               torch.tensor(EDGES), sub=10)
    assert _chi_square_pvalue(x, probs, EDGES) > 1e-3


@pytest.mark.parametrize("name", ["blob", "circles2", "checker"])
def test_wrong_sampler_fails_the_fit(name):
    target, sde = make_target(name), make_sde("ou")
    x = target.sample(40_000, gen(12), dtype=torch.float64).numpy() * 1.05  # 5% too wide
    t0 = 1e-3 if name != "checker" else 0.0
    probs = _bin_probabilities(lambda z: target.log_prob(z, torch.full((len(z),), t0, dtype=torch.float64), sde),
                               torch.tensor(EDGES), sub=10)
    assert _chi_square_pvalue(x, probs, EDGES) < 1e-6


@pytest.mark.parametrize("name,sde_name", [("blob", "ou"), ("circles2", "vp"), ("checker", "ou"), ("checker", "ve")])
def test_kernel_pushed_samples_match_the_diffused_density(name, sde_name):
    target, sde = make_target(name), make_sde(sde_name)
    t = 0.3 * sde.T
    g = gen(13)
    x0 = target.sample(40_000, g, dtype=torch.float64)
    xt, _ = sde.kernel_sample(x0, torch.full((len(x0),), t, dtype=torch.float64), g)
    probs = _bin_probabilities(lambda z: target.log_prob(z, torch.full((len(z),), t, dtype=torch.float64), sde),
                               torch.tensor(EDGES), sub=6)
    assert _chi_square_pvalue(xt.numpy(), probs, EDGES) > 1e-3


def test_gmm_is_d_dimensional_and_samples_have_its_moments():
    target = make_target("gmm", dim=6)
    x = target.sample(100_000, gen(14), dtype=torch.float64)
    assert x.shape == (100_000, 6)
    # Mean 0; per-axis variance = std^2 + spread^2 * (2 components of 12 on that axis) / 12.
    expected_var = 0.5**2 + 2.5**2 * 2 / 12
    assert x.mean(0).abs().max() < 5 * math.sqrt(expected_var / 1e5)
    np.testing.assert_allclose(x.var(0).numpy(), expected_var, rtol=0.02)


def test_sampling_is_deterministic_for_a_seed():
    for name in TARGETS:
        target = make_target(name)
        assert torch.equal(target.sample(100, gen(3)), target.sample(100, gen(3)))


def test_unknown_target_and_parameter_are_clear_errors():
    with pytest.raises(ValueError, match="unknown target 'donut'"):
        make_target("donut")
    with pytest.raises(ValueError, match="unknown parameter"):
        make_target("blob", radius=3)


def test_float32_log_prob_agrees_with_float64():
    sde = make_sde("ou")
    for name in DENSITY_TARGETS:
        target = make_target(name)
        x = target.sample(200, gen(5), dtype=torch.float64)
        t = torch.full((200,), 0.5, dtype=torch.float64)
        lp64 = target.log_prob(x, t, sde)
        lp32 = target.log_prob(x.float(), t.float(), sde)
        assert lp32.dtype == torch.float32
        torch.testing.assert_close(lp32.double(), lp64, rtol=1e-4, atol=1e-4)


def test_the_toys_sample_inside_the_box_and_the_samples_only_ones_refuse_a_density(tmp_path):
    import numpy as np

    from fpbench.core.sde import OU
    from fpbench.core.targets import NoDensityError, has_density, make_target

    for name in ("8gaussians", "moons", "swissroll", "pinwheel"):
        x = make_target(name).sample(20_000, torch.Generator().manual_seed(0), dtype=torch.float64)
        assert x.shape == (20_000, 2) and ((x.abs() <= 3.5).all(1).double().mean() > 0.99), name
    assert has_density(make_target("8gaussians")) and not has_density(make_target("moons"))
    with pytest.raises(NoDensityError, match="'moons' has samples only: no exact density"):
        make_target("moons").log_prob(torch.zeros(2, 2), 0.5, OU())
    data = np.random.default_rng(0).normal(size=(500, 3))
    np.save(tmp_path / "mine.npy", data)
    mine = make_target("samples", path=str(tmp_path / "mine.npy"))
    drawn = mine.sample(1000, torch.Generator().manual_seed(1), dtype=torch.float64).numpy()
    assert mine.dim == 3 and set(map(tuple, drawn)) <= set(map(tuple, data))  # drawn from the user's rows
    with pytest.raises(ValueError, match="target 'samples': no file 'absent.npy'"):
        make_target("samples", path="absent.npy")


def test_eight_gaussians_has_the_mixture_density_in_closed_form():
    from fpbench.core.sde import OU
    from fpbench.core.targets import make_target

    target, x = make_target("8gaussians"), torch.tensor([[2.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    angles = torch.arange(8, dtype=torch.float64) * math.pi / 4
    means = 2.0 * torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    dens = torch.exp(-((x[:, None] - means) ** 2).sum(-1) / (2 * 0.25**2)).mean(1) / (2 * math.pi * 0.25**2)
    torch.testing.assert_close(target.log_prob(x, torch.zeros(2, dtype=torch.float64), OU()), dens.log())


def test_a_users_target_class_is_samples_only_or_has_its_exact_density():
    from fpbench.core.models import ExactScore
    from fpbench.core.residuals import log_fp_residual_mc
    from fpbench.core.sde import OU
    from fpbench.core.targets import has_density, make_target

    ring = make_target("tests.plugins.targets:Ring", noise=0.05)
    assert not has_density(ring) and ring.sample(10, torch.Generator().manual_seed(0)).shape == (10, 2)
    gauss = make_target("tests.plugins.targets:Gaussian")
    assert has_density(gauss)
    x = torch.randn(100, 2, dtype=torch.float64)
    t = torch.full((100,), 0.7, dtype=torch.float64)
    m, s = OU().marginal(t)
    torch.testing.assert_close(gauss.score(x, t, OU()), -x / (m**2 * 0.5 + s**2)[:, None])  # closed form
    residual = log_fp_residual_mc(ExactScore(gauss, OU()).potential, OU(), 2, 2000, dtype=torch.float64)
    assert float(residual) < 1e-20  # its own density satisfies the log-FP equation: the oracle works
    with pytest.raises(ValueError, match="cannot load target 'tests.plugins.targets:Nothing'"):
        make_target("tests.plugins.targets:Nothing")
