"""Forward-mode jets and the written-out reverse-mode score against autograd (``fpbench.core.operators``,
itself tested against closed forms), in float64; and ensembles built on them."""

import copy
import math

import pytest
import torch

from fpbench.core import operators as ops
from fpbench.core.jet import BatchedMLP, SoftplusDerivatives, compiled_score, fast_score, supports
from fpbench.core.models import ExactScore, PotentialMLP, ScoreMLP, make_model
from fpbench.core.residuals import log_fp_residual, score_fp_residual
from fpbench.core.sde import make_sde
from fpbench.core.targets import make_target
from fpbench.run.execute import compiler_found  # read at collection, before conftest's patch
from fpbench.train.ensemble import term_values, train_ensemble
from fpbench.train.loop import TrainingError, train
from fpbench.train.methods import make_method

TRAIN_CFG = {"iterations": 8, "lr_stages": [[1e-3, 0.5], [1e-4, 0.5]], "dsm_batch": 64, "time_law": "beta12",
             "t_eps": 1e-5, "dsm_weighting": "likelihood", "residual_points": 32, "residual_t0": 1e-5,
             "box": [-3.5, 3.5], "dtype": "float32", "log_every": 1, "checkpoint_every": 4}


def _models(cls, n, dim=2, seed=0, **kw):
    torch.manual_seed(seed)
    return [cls(dim, width=12, depth=3, beta=kw.get("beta", 100.0)).double() for _ in range(n)]


def _points(e, n, d, seed=1):
    g = torch.Generator().manual_seed(seed)
    # wide enough that some units sit in softplus's linear regime (beta h > 20)
    return 2 * torch.randn(e, n, d, generator=g, dtype=torch.float64), torch.rand(e, n, generator=g,
                                                                                   dtype=torch.float64) * 10


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_potential_jet_matches_autograd(dim):
    models = _models(PotentialMLP, 3, dim)
    x, t = _points(3, 40, dim)
    u, u_t, grad, lap = BatchedMLP(models).potential_derivatives(x, t)
    for e, m in enumerate(models):
        ref = ops.derivatives(m.potential, x[e], t[e], create_graph=False)
        for mine, theirs in zip((u[e], u_t[e], grad[e], lap[e]), ref):
            torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dim", [2, 3])
def test_reverse_mode_score_matches_autograd(dim):
    models = _models(PotentialMLP, 2, dim)
    x, t = _points(2, 50, dim)
    s = BatchedMLP(models).score(x, t)
    for e, m in enumerate(models):
        torch.testing.assert_close(s[e], ops.gradient(m.potential, x[e], t[e], create_graph=False),
                                   rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(fast_score(m)(x[e], t[e]), m.score(x[e], t[e]).detach(), rtol=1e-10, atol=1e-12)


def test_score_network_jet_matches_autograd():
    models = _models(ScoreMLP, 2, 2)
    x, t = _points(2, 30, 2)
    s, s_t, jac, grad_div = BatchedMLP(models).score_derivatives(x, t)
    for e, m in enumerate(models):
        xx, tt = x[e].clone().requires_grad_(), t[e].clone().requires_grad_()
        out = m.score(xx, tt)
        ref_jac = ops.jacobian(m.score, x[e], t[e], create_graph=False)
        ref_st = torch.stack([ops.grad_of_sum(out[:, i], tt, True) for i in range(2)], -1)
        div = sum(ops.grad_of_sum(out[:, i], xx, True)[:, i] for i in range(2))
        torch.testing.assert_close(s[e], out.detach())
        torch.testing.assert_close(s_t[e], ref_st.detach(), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(jac[e], ref_jac, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(grad_div[e], ops.grad_of_sum(div, xx, False), rtol=1e-10, atol=1e-10)


def test_jet_residual_terms_equal_the_autograd_residuals():
    sde = make_sde("ou")
    pots, scores = _models(PotentialMLP, 2, 2), _models(ScoreMLP, 2, 2, seed=3)
    x, t = _points(2, 25, 2)
    draws = [{"log_fp": (x[e], t[e]), "score_fp": (x[e], t[e])} for e in range(2)]
    cfg = {"dsm_weighting": "likelihood"}
    mine = term_values(pots, sde, cfg, "log_fp", draws)
    ref = [log_fp_residual(m.potential, sde, x[e], t[e]).pow(2).mean() for e, m in enumerate(pots)]
    torch.testing.assert_close(mine, torch.stack(ref).detach(), rtol=1e-9, atol=1e-12)
    mine = term_values(scores, sde, cfg, "score_fp", draws, chunk=1)
    ref = [score_fp_residual(m.score, sde, x[e], t[e]).pow(2).sum(-1).mean() for e, m in enumerate(scores)]
    torch.testing.assert_close(mine, torch.stack(ref).detach(), rtol=1e-9, atol=1e-12)


def test_the_compiled_score_is_autograds_up_to_float32_rounding():
    torch.manual_seed(0)
    model = PotentialMLP(2, width=16, depth=2, beta=100.0).float()  # the authors' sharp softplus
    x, t = torch.randn(64, 2), torch.rand(64) * 10
    with torch.no_grad():
        mine = compiled_score(model)(x, t)
    torch.testing.assert_close(mine, model.score(x, t).detach(), rtol=1e-5, atol=1e-5)


def test_a_compiler_failure_falls_back_to_the_eager_score_and_says_so(monkeypatch):
    def broken(fn, **kw):
        def call(*args):
            raise RuntimeError("no C++ compiler")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    torch.manual_seed(0)
    model = PotentialMLP(2, width=16, depth=2).float()
    x, t = torch.randn(8, 2), torch.rand(8)
    score = compiled_score(model)
    with pytest.warns(UserWarning, match="torch.compile failed .*no C.. compiler.*sampling without it"):
        first = score(x, t)
    torch.testing.assert_close(first, fast_score(model)(x, t))
    torch.testing.assert_close(score(x, t), first)  # later calls go straight to the eager path


def test_exact_score_is_not_an_mlp_and_keeps_its_own_score():
    exact = ExactScore(make_target("blob"), make_sde("ou"))
    assert not supports(exact) and fast_score(exact) == exact.score


def _fresh(seed, w_r):
    torch.manual_seed(seed)
    return PotentialMLP(width=16, depth=2), make_method("fp", w_r=w_r)


def test_a_member_trains_the_same_alone_or_in_an_ensemble():
    specs = [("blob", 0.0, 1), ("checker", 1.0, 2), ("circles2", 10.0, 3)]
    group = [_fresh(s, w) for _, w, s in specs]
    alone = copy.deepcopy(group[1][0])
    sde = make_sde("ou")
    train_ensemble([m for m, _ in group], [me for _, me in group], [make_target(n) for n, _, _ in specs], sde,
                   TRAIN_CFG, [s for *_, s in specs])
    train_ensemble([alone], [make_method("fp", w_r=1.0)], [make_target("checker")], sde, TRAIN_CFG, [2])
    for p, q in zip(group[1][0].parameters(), alone.parameters()):
        assert torch.equal(p, q)  # one member at a time on the CPU: bit-identical


def test_ensemble_close_to_one_by_one_autograd_training():
    model, method = _fresh(4, 1.0)
    member = copy.deepcopy(model)
    sde, target = make_sde("ou"), make_target("blob")
    single = train(model, method, target, sde, TRAIN_CFG, 4)
    (res,) = train_ensemble([member], [make_method("fp", w_r=1.0)], [target], sde, TRAIN_CFG, [4])
    first, ours = single.history[0], res.history[0]  # same weights, same draws: same loss to rounding
    assert ours["loss"] == pytest.approx(first["loss"], rel=1e-5)
    for p, q in zip(model.parameters(), member.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=2e-4)


def test_a_diverging_member_fails_alone():
    sde = make_sde("ou")
    good, bad = _fresh(5, 1.0)[0], _fresh(6, 1.0)[0]
    with torch.no_grad():
        bad.net[0].weight.fill_(math.nan)
    kept = copy.deepcopy(good)
    results = train_ensemble([good, bad], [make_method("fp", w_r=1.0)] * 2, [make_target("blob")] * 2, sde,
                             TRAIN_CFG, [5, 6], labels=["good", "bad"])
    assert isinstance(results[1], TrainingError) and "case bad: loss is nan at iteration 0" in str(results[1])
    assert not isinstance(results[0], Exception) and len(results[0].history) == TRAIN_CFG["iterations"]
    train_ensemble([kept], [make_method("fp", w_r=1.0)], [make_target("blob")], sde, TRAIN_CFG, [5])
    for p, q in zip(good.parameters(), kept.parameters()):
        assert torch.equal(p, q)  # the healthy member is unaffected by its diverging neighbour


def test_softplus_derivatives_node_passes_gradcheck_in_every_regime():
    """s1, value and s2 of softplus(beta) and their backward (s3 included) against finite differences,
    with points in the linear regime (beta h > threshold), near it and far below zero."""
    h = torch.tensor([-0.5, -0.08, -0.01, 0.0, 0.004, 0.03, 0.19, 0.25, 1.0], dtype=torch.float64,
                     requires_grad=True)
    for value, curvature in ((True, True), (False, False), (True, False)):
        def f(x, value=value, curvature=curvature):
            return tuple(o for o in SoftplusDerivatives.apply(x, 100.0, 20.0, value, curvature) if o is not None)
        assert torch.autograd.gradcheck(f, (h,), eps=1e-7, atol=1e-6)
    s1, a, s2 = SoftplusDerivatives.apply(h.detach(), 100.0, 20.0, True, True)
    torch.testing.assert_close(a, torch.nn.functional.softplus(h.detach(), 100.0, 20.0), rtol=0, atol=0)
    torch.testing.assert_close(s1, torch.where(100 * h > 20, 1.0, torch.sigmoid(100 * h)).detach())
    torch.testing.assert_close(s2, (100 * s1 * (1 - s1)))


@pytest.mark.skipif(not compiler_found(), reason="torch.compile on the CPU needs a C++ compiler")
@pytest.mark.parametrize("term", ["dsm", "log_fp", "score_fp"])
def test_compiled_terms_equal_the_eager_jets(term):
    """The ``--compile`` path: the same term values and parameter gradients as the eager jets (float64),
    and it really compiled (no silent fallback)."""
    import fpbench.train.ensemble as ens

    cls = ScoreMLP if term == "score_fp" else PotentialMLP
    eager, comp = _models(cls, 2, seed=7), None
    comp = [copy.deepcopy(m) for m in eager]
    sde, cfg = make_sde("ou"), dict(TRAIN_CFG, dtype="float64")
    method = make_method("score_fp" if term == "score_fp" else "fp", **({"w_s": 1.0} if term == "score_fp"
                                                                        else {"w_r": 1.0}))
    draws = [ens._member_draws(make_target("blob"), sde, method, cfg, torch.Generator().manual_seed(e),
                               torch.float64, None) for e in range(2)]
    ens._COMPILED.clear()
    mine = term_values(comp, sde, cfg, term, draws, chunk=1, compiled=True)
    theirs = term_values(eager, sde, cfg, term, draws, chunk=1)
    assert not ens._COMPILED.get("failed")
    torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-12)
    mine.sum().backward()
    theirs.sum().backward()
    for m, e in zip(comp, eager):
        for p, q in zip(m.parameters(), e.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-8, atol=1e-10)


def test_a_failing_compile_warns_and_trains_eagerly(monkeypatch):
    import fpbench.train.ensemble as ens

    def broken(*_a, **_k):
        raise RuntimeError("no compiler here")
    monkeypatch.setattr(torch, "compile", broken)
    ens._COMPILED.clear()
    model, method = _fresh(8, 1.0)
    twin = copy.deepcopy(model)
    sde, target = make_sde("ou"), make_target("blob")
    with pytest.warns(UserWarning, match="torch.compile failed .*no compiler here"):
        train_ensemble([model], [method], [target], sde, TRAIN_CFG, [8], compile=True)
    ens._COMPILED.clear()
    train_ensemble([twin], [make_method("fp", w_r=1.0)], [target], sde, TRAIN_CFG, [8])
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softplus_from_one_exp_equals_torch_kernels(dtype):
    """The compiled path's (sigmoid, softplus) formula against torch's own kernels, across regimes."""
    from fpbench.core.jet import softplus_from_one_exp

    h = torch.linspace(-2, 2, 4001, dtype=dtype)
    s1, a = softplus_from_one_exp(h, 100.0, 20.0)
    eps = torch.finfo(dtype).eps
    tol = {"rtol": 2e-6, "atol": 1e-12} if dtype == torch.float32 else {"rtol": 1e-14, "atol": 1e-300}
    torch.testing.assert_close(a, torch.nn.functional.softplus(h, 100.0, 20.0), rtol=tol["rtol"], atol=eps / 100)
    torch.testing.assert_close(s1, torch.where(100 * h > 20, 1.0, torch.sigmoid(100 * h)).to(dtype), **tol)


def test_thin_matmul_gradients_and_their_gradients_match_finite_differences():
    from fpbench.core.jet import ThinMatmul

    g = torch.Generator().manual_seed(3)
    a = torch.randn(2, 7, 5, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(2, 5, 2, dtype=torch.float64, generator=g, requires_grad=True)
    torch.testing.assert_close(ThinMatmul.apply(a, b), a @ b, rtol=1e-14, atol=0)
    assert torch.autograd.gradcheck(ThinMatmul.apply, (a, b))
    assert torch.autograd.gradgradcheck(ThinMatmul.apply, (a, b))  # the score-FP term of a potential needs it


def test_the_float32_probe_tells_float32_from_bfloat16_rounding():
    from fpbench.train.process import float32_accurate

    assert float32_accurate(torch.matmul)
    assert not float32_accurate(lambda a, b: (a.bfloat16() @ b.bfloat16()).float())  # bfloat16 inputs
    assert not float32_accurate(lambda a, b: a.bfloat16().float() @ b)  # one side rounded is enough


def test_onednn_matmuls_keep_float32_accuracy_and_restore_the_flag():
    from fpbench.train.process import cpu_settings, onednn_float32_matmuls

    g = torch.Generator().manual_seed(4)
    a, w = torch.randn(4000, 80, generator=g), torch.randn(80, 80, generator=g)
    forms = {"forward": lambda x, y: x @ y, "weight gradient": lambda x, y: x.T @ (x @ y)}
    flags = getattr(torch.backends.mkldnn, "matmul", None)
    before = getattr(flags, "fp32_precision", None)
    with onednn_float32_matmuls():
        got = {k: f(a, w) for k, f in forms.items()}
    for k, f in forms.items():  # float32 rounding, relative to the sum of |terms|: 1e-6, not bfloat16's 1e-3
        scale = f(a.double().abs(), w.double().abs())
        assert ((got[k].double() - f(a.double(), w.double())).abs() / scale).max() < 1e-5, k
    assert getattr(flags, "fp32_precision", None) == before
    with pytest.raises(RuntimeError), onednn_float32_matmuls():
        raise RuntimeError("an error inside the block")
    assert getattr(flags, "fp32_precision", None) == before
    with cpu_settings("cuda"):  # GPU runs keep torch's CPU matmuls as they are
        assert getattr(flags, "fp32_precision", None) == before


def test_all_members_in_one_batched_call_train_as_one_at_a_time(monkeypatch):
    """The GPU's way (member_chunk None: every member through one bmm per layer), run on the CPU,
    against the CPU's (one member per call); float64, so only rounding can differ."""
    import fpbench.train.ensemble as ens

    specs = [("blob", 0.0, 1), ("checker", 1.0, 2), ("circles2", 10.0, 3)]
    cfg, sde = dict(TRAIN_CFG, dtype="float64"), make_sde("ou")
    runs = {}
    for chunk in (1, None):
        monkeypatch.setattr(ens, "member_chunk", lambda device, c=chunk: c)
        group = [(m.double(), me) for m, me in (_fresh(s, w) for _, w, s in specs)]
        results = train_ensemble([m for m, _ in group], [me for _, me in group], [make_target(n) for n, _, _ in specs],
                                 sde, cfg, [s for *_, s in specs])
        runs[chunk] = ([r.history for r in results], [list(m.parameters()) for m, _ in group])
    for a, b in zip(runs[1][0], runs[None][0]):
        assert [h["loss"] for h in a] == pytest.approx([h["loss"] for h in b], rel=1e-9)
    for ps, qs in zip(runs[1][1], runs[None][1]):
        for p, q in zip(ps, qs):
            torch.testing.assert_close(p, q, rtol=1e-8, atol=1e-10)


def test_the_samplers_score_in_blocks_is_bit_identical_to_one_evaluation():
    """fast_score evaluates a chunk in blocks of rows (cache; the speed is in `fpbench bench`). On the
    chunks the scales sample (the quick and converged scales' 60,000 particles) the blocks give the very
    numbers of one evaluation, also with a scalar t; in general a row's result can depend, in its last bits,
    on how many rows the matmul is given (MKL picks its kernel path by shape: measured on this CPU, blocks
    of 1, 2, 7 or 999 rows of 20,000, or of 8 rows of 20,003, differ), so there it is equal to rounding."""
    torch.manual_seed(0)
    model = make_model("potential", 2, width=80, depth=3, beta=100.0)
    x, t = torch.randn(60_000, 2), torch.rand(60_000)
    whole = fast_score(model, block=len(x))
    assert torch.equal(fast_score(model)(x, t), whole(x, t))
    assert torch.equal(fast_score(model)(x, 0.3), whole(x, torch.full((len(x),), 0.3)))
    for block in (7, 999, 4096):
        torch.testing.assert_close(fast_score(model, block=block)(x[:20_003], t[:20_003]),
                                   whole(x[:20_003], t[:20_003]), rtol=1e-5, atol=1e-7)
    assert not fast_score(model)(x, t).requires_grad  # no autograd graph kept for the samplers
