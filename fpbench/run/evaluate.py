"""Evaluate a trained case against its exact oracle: W2^2 between ODE, SDE and p0 samples with noise
floors and intervals (grid, exact or sliced), the model's residuals (eqs. 20, 32), L_DSM and curl,
its convergence evidence, the samplers' discretisation bounds, and the exact score through the same
samplers. Cached quantities (floors, oracles) live in the store."""

from __future__ import annotations

import math

import torch

from ..core import metrics as mx
from ..core import operators as ops
from ..core import streams
from ..core.convergence import evidence
from ..core.losses import DSMBatch, dsm_batch, dsm_loss_terms
from ..core.models import ExactScore, in_dtype
from ..core.modes import compare_modes
from ..core.residuals import Box, log_fp_residual_mc, score_fp_residual_mc
from ..core.samplers import ode_discretisation_pairs, refined_grid, sample_pair, sde_discretisation_pairs
from ..core.targets import has_density
from .config import ORACLE_FLOOR_REPS, POINT_DEFAULTS, score_residual_points
from .store import Store, read_json, write_json
from .suite import Case, build


def grid_of(case: Case) -> mx.Grid:
    low, high, n = case.config["metrics"]["grid"]
    return mx.Grid(float(low), float(high), int(n))


def floor_spec(case: Case, n: int | None = None, reps: int | None = None) -> dict:
    """What a grid noise floor depends on (its cache key in the store): target, n, grid and replicates."""
    cfg = case.config
    return {"target": cfg["target"], "n": n or cfg["sample"]["n"], "grid": cfg["metrics"]["grid"],
            "reps": reps or cfg["metrics"]["floor_reps"]}


def noise_floor(case: Case, target, store: Store, n: int | None = None, reps: int | None = None) -> mx.NoiseFloor:
    """The grid W2^2 floor at the case's sample size (or ``n``) from the case's ``floor_reps`` (or
    ``reps``) pairs, cached per (target, n, grid, reps)."""
    spec = floor_spec(case, n, reps)
    return store.cached_floor(spec, lambda: mx.grid_noise_floor(lambda n, g: target.sample(n, g), spec["n"],
                                                                 spec["reps"], seed=streams.GRID_FLOOR,
                                                                 grid=grid_of(case)))


def distance(case: Case) -> str:
    """'grid' (the paper's 64 x 64 grid W2^2, 2D) or 'points': exact W2^2 on ``point_n`` samples and
    sliced W2^2 on all of them (any d). Set by a suite's metrics table; absent means 'grid'."""
    return case.config["metrics"].get("distance", POINT_DEFAULTS["distance"])


def _point_setting(case: Case, key: str):
    return case.config["metrics"].get(key, POINT_DEFAULTS[key])


def point_estimates(case: Case, samples: dict, floors: dict) -> dict:
    """Exact W2^2 on the first ``point_n`` samples (the table values) and sliced W2^2 on all, per pair."""
    cfg, seed = case.config["metrics"], case.config["seed"]
    m, proj = _point_setting(case, "point_n"), _point_setting(case, "n_projections")
    out = {}
    for i, (name, a, b) in enumerate(mx.TABLE_PAIRS):
        out[name] = mx.point_w2_estimate(samples[a][:m], samples[b][:m], floors["exact"].mean, "exact",
                                         cfg["n_boot"], seed + i).to_dict()
        out[f"{name}_sliced"] = mx.point_w2_estimate(samples[a], samples[b], floors["sliced"].mean, "sliced",
                                                     cfg["n_boot"], seed + i, proj).to_dict()
    return out


def point_noise_floors(case: Case, target, store: Store, n: int | None = None) -> dict:
    """Exact (on ``point_n``) and sliced (on ``n``) W2^2 between independent p0 draws, cached."""
    cfg = case.config
    n = n or cfg["sample"]["n"]
    spec = {"target": cfg["target"], "n": n, "point_n": _point_setting(case, "point_n"),
            "n_projections": _point_setting(case, "n_projections"), "reps": cfg["metrics"]["floor_reps"]}

    def measure() -> dict:
        values = {"exact": [], "sliced": []}
        for r in range(spec["reps"]):
            gen = streams.fixed(streams.POINT_FLOOR + r)
            x, y = target.sample(n, gen), target.sample(n, gen)
            values["exact"].append(mx.exact_w2(x[:spec["point_n"]], y[:spec["point_n"]]))
            values["sliced"].append(mx.sliced_w2(x, y, spec["n_projections"], seed=r))
        return {"spec": spec, "floors": {k: mx.NoiseFloor.from_values(v, n).to_dict() for k, v in values.items()}}

    stored = store.computed_once(store.floor_path(spec), measure)
    return {k: mx.NoiseFloor(**v) for k, v in stored["floors"].items()}


def with_convergence(case: Case, store: Store, device=None) -> dict:
    """A finished case's record; one stored by an fpbench older than the convergence gate gets its
    evidence now, from its trained weights and history (no sampling), and is stored again."""
    record = store.metrics(case.key)
    if "convergence" not in record["metrics"] and record["metrics"].get("exact_density", True):
        out = store.case_dir(case.key)
        target, sde, model, _ = build(case, device)
        model.load_state_dict(torch.load(out / "model.pt", weights_only=True))
        record["metrics"]["convergence"] = convergence_evidence(case, model, target, sde,
                                                        read_json(out / "train.json")["history"], device)
        write_json(out / "metrics.json", record)
    return record


def convergence_evidence(case: Case, model, target, sde, history: list, device=None) -> dict:
    """The case's convergence evidence (``fpbench.core.convergence``) in its training dtype."""
    return evidence(model, target, sde, history, case.config["seed"], getattr(torch, case.config["train"]["dtype"]),
                    device)


def evaluate(case: Case, model, target, sde, hist: dict, store: Store, device=None, history=(),
             with_oracle: bool = True) -> dict:
    """W2^2 (ODE-SDE, ODE-p0, SDE-p0) with floor and intervals; R~, R^s, L_DSM and curl of the model;
    its convergence evidence against the exact score (``fpbench.core.convergence``); with ``with_oracle``,
    the exact score through the same sampler (``oracle``: per target, cached; left out where the exact
    score is too slow at the case's settings, e.g. circles2 at nfe = 800)."""
    cfg, grid = case.config["metrics"], grid_of(case)
    n, seed = case.config["sample"]["n"], case.config["seed"]
    if distance(case) == "grid":
        floor = noise_floor(case, target, store)
        out = {k: v.to_dict() for k, v in mx.table_estimates(hist, floor.mean, n, grid, cfg["n_boot"], seed).items()}
        out["floor"] = floor.to_dict()
        for name in ("ode", "sde", "p0"):  # the fraction of samples inside the grid (the rest are dropped)
            out[f"inside_grid_{name}"] = float(hist[name].sum() / n)
    else:
        floors = point_noise_floors(case, target, store)
        out = point_estimates(case, hist, floors)
        out["floor"], out["floor_sliced"] = floors["exact"].to_dict(), floors["sliced"].to_dict()
    out.update(model_diagnostics(case, model, target, sde, device))
    sampled = in_dtype(model, getattr(torch, case.config["sample"]["dtype"]))
    out.update(discretisation(case, lambda x, t: sampled.score(x, t), sde, target.dim, device))
    if not has_density(target):  # samples only: no oracle, no convergence evidence (reports say so)
        out["exact_density"] = False
        return out
    out["convergence"] = convergence_evidence(case, model, target, sde, list(history), device)
    if with_oracle:
        out["oracle"] = oracle(case, target, sde, store)
        if distance(case) == "grid":  # the exact score's floor from enough pairs for check H3's noise (cached)
            noise_floor(case, target, store, n=out["oracle"]["n"], reps=ORACLE_FLOOR_REPS)
    return out


def time_grid(case: Case, T: float):
    cfg = case.config["sample"]
    return refined_grid(T, cfg["nfe"], cfg["fine_steps"], cfg["coarse_in_fine"], cfg["eps"])


def discretisation(case: Case, score, sde, dim: int, device=None, dtype=None, seed: int | None = None) -> dict:
    """Coupling bounds on the discretisation part of W2^2 for the ODE and the SDE sampler of a case
    (random numbers from ``seed``, default the case's own)."""
    cfg = case.config["sample"]
    dtype = dtype or getattr(torch, cfg["dtype"])
    gen = streams.generator(case.config["seed"] if seed is None else seed, streams.DISCRETISATION)
    x_T = sde.prior_sample(case.config["metrics"]["disc_points"], dim, gen, dtype, device)
    ts = time_grid(case, sde.T)
    low, high = case.config["metrics"]["grid"][:2]
    return {**coupling_summary("disc_ode", ode_discretisation_pairs(score, sde, x_T, ts, cfg["scheme"]), low, high),
            **coupling_summary("disc_sde", sde_discretisation_pairs(score, sde, x_T, ts, gen, cfg["scheme"]), low,
                               high)}


def coupling_summary(name: str, pairs, low: float, high: float) -> dict:
    """The coupling bound ``name`` (the mean of ||x - y||^2 over coupled trajectories) and what explains it
    when it is large: a few trajectories that diverge dominate the mean (measured: w_R > 0 models with 1-10%
    of trajectories ending thousands of units away), so also the median, the share of pairs with an end
    outside the grid's box (whose samples the grid W2^2 drops) and the mean over the pairs inside it."""
    if pairs is None:
        return {name: math.nan}
    a, b = pairs
    d = ((a - b) ** 2).sum(-1).double()
    inside = ((a >= low) & (a <= high) & (b >= low) & (b <= high)).all(-1)
    return {name: float(d.mean()), f"{name}_median": float(d.median()),
            f"{name}_outside": float(1 - inside.double().mean()),
            f"{name}_inside": float(d[inside].mean()) if inside.any() else math.nan}


def oracle(case: Case, target, sde, store: Store, n: int | None = None) -> dict:
    """The exact score through the case's sampler settings: W2^2 to p0 and between ODE and SDE at
    ``n`` samples (default the case's ``oracle_n``), its own noise floor there, and its discretisation
    bounds. Cached per (target, SDE, sample settings, n)."""
    cfg = case.config
    n = n or cfg["metrics"]["oracle_n"]
    spec = {"oracle": 1, "target": cfg["target"], "sde": cfg["sde"], "sample": cfg["sample"], "n": n,
            "grid": cfg["metrics"]["grid"], "reps": cfg["metrics"]["floor_reps"],
            "disc_points": cfg["metrics"]["disc_points"]}
    measure = lambda: {"spec": spec, "oracle": _oracle(case, target, sde, store, n)}  # noqa: E731
    return store.computed_once(store.floor_path(spec), measure)["oracle"]


def _oracle(case: Case, target, sde, store: Store, n: int) -> dict:
    """``oracle``'s measurement (not cached)."""
    cfg = case.config
    exact, grid = ExactScore(target, sde), grid_of(case)
    x_ode, x_sde = sample_pair(exact.score, sde, n, target.dim, time_grid(case, sde.T),
                               seed=streams.EXACT_SAMPLERS,
                               scheme=cfg["sample"]["scheme"], chunk=cfg["sample"]["chunk"], dtype=torch.float64,
                               noise_last_step=cfg["sample"]["noise_last_step"])
    x_p0 = target.sample(n, streams.fixed(streams.EXACT_P0))
    if distance(case) != "grid":
        samples = {"ode": x_ode, "sde": x_sde, "p0": x_p0}
        m = _point_setting(case, "point_n")
        result = {name: mx.exact_w2(samples[a][:m], samples[b][:m]) for name, a, b in mx.TABLE_PAIRS}
        floor = point_noise_floors(case, target, store, n)["exact"]
    else:
        h = {"ode": mx.grid_histogram(x_ode, grid), "sde": mx.grid_histogram(x_sde, grid),
             "p0": mx.grid_histogram(x_p0, grid)}
        floor = mx.grid_noise_floor(lambda k, g: target.sample(k, g), n, cfg["metrics"]["floor_reps"],
                                    seed=streams.EXACT_FLOOR,
                                    grid=grid)
        result = {name: mx.grid_w2_from_weights(h[a], h[b], grid) for name, a, b in mx.TABLE_PAIRS}
    result.update({"n": n, "floor": floor.to_dict(), "floor_mean": floor.mean, "floor_q95": floor.q95})
    # seed 0 whichever case measures it first: the cached oracle is shared by every seed's cases
    result.update(discretisation(case, exact.score, sde, target.dim, dtype=torch.float64,
                                  seed=streams.EXACT_DISCRETISATION))
    return result


def model_diagnostics(case: Case, model, target, sde, device=None) -> dict:
    """R~ (eq. 20) and R^s (eq. 32) on fresh points of the training domain; L_DSM of the model
    and of the exact score on one fresh batch (their difference estimates L_SM, eq. 4, which
    removes the target-specific constant); curl statistics of the score."""
    cfg, train_cfg = case.config["metrics"], case.config["train"]
    dtype = getattr(torch, train_cfg["dtype"])
    gen = streams.generator(case.config["seed"], streams.DIAGNOSTICS)
    box, t0 = Box(*train_cfg["box"]), train_cfg["residual_t0"]
    score = lambda x, t: model.score(x, t, create_graph=True)
    out = {}
    if getattr(model, "is_potential", False):
        out["log_fp_residual"] = log_fp_residual_estimate(case, model, sde, target.dim, gen, device)
    out["score_fp_residual"] = float(score_fp_residual_mc(score, sde, target.dim, score_residual_points(cfg),
                                                          box, t0, gen, dtype, device))
    out.update(dsm_diagnostics(case, model, target, sde, gen, dtype, device))
    out.update(mode_diagnostics(model, target, sde, dtype, device))
    out["prior_score_ratio"] = prior_score_ratio(model, sde, target.dim, gen, dtype, device)
    out.update(curl_diagnostics(cfg["curl_points"], model, target, sde, box, gen, dtype, device))
    if not getattr(model, "is_potential", False) and target.dim == 2:  # Fig. 1's panel (b), stored for the report
        out["curl_field"] = curl_field(model, box, dtype, device)
    return out


CURL_FIELD = {"n": 64, "t": 0.01}  # Fig. 1 (b): |curl s_theta(x, t)| on an n x n grid of the box at this t


def curl_field(model, box, dtype, device=None) -> dict:
    """|curl s_theta(x, t)| of a free score model on the nodes of an n x n grid of ``box`` at Fig. 1's t
    (``CURL_FIELD``); values to 4 significant digits (a figure's, about 33 kB of JSON)."""
    n, t_value = CURL_FIELD["n"], CURL_FIELD["t"]
    axis = torch.linspace(box.low, box.high, n, dtype=dtype, device=device)
    xx, yy = torch.meshgrid(axis, axis, indexing="ij")
    x = torch.stack([xx.ravel(), yy.ravel()], 1)
    t = torch.full((len(x),), t_value, dtype=dtype, device=device)
    c = ops.curl(lambda a, b: model.score(a, b, create_graph=True), x, t).abs().detach().reshape(n, n).cpu()
    return {"n": n, "t": t_value, "box": [box.low, box.high],
            "values": [[float(f"{v:.4g}") for v in row] for row in c.double().tolist()]}


def log_fp_residual_estimate(case: Case, model, sde, dim: int, gen=None, device=None) -> float:
    """R~ (eq. 20) of a potential model as every case measures it: on ``metrics.residual_points`` fresh
    points of the training box and times in [residual_t0, T], drawn from the case's diagnostics stream
    (``gen``, which ``model_diagnostics`` goes on drawing from, or a fresh one)."""
    train_cfg = case.config["train"]
    gen = gen or streams.generator(case.config["seed"], streams.DIAGNOSTICS)
    return float(log_fp_residual_mc(model.potential, sde, dim, case.config["metrics"]["residual_points"],
                                    Box(*train_cfg["box"]), train_cfg["residual_t0"], gen,
                                    getattr(torch, train_cfg["dtype"]), device))


def mode_diagnostics(model, target, sde, dtype, device) -> dict:
    """The model's density exp(phi) against p_t at small t: spurious modes and off-support mass
    (``fpbench.core.modes``); only a potential model on a 2D target with an exact density has them."""
    if not (getattr(model, "is_potential", False) and has_density(target) and target.dim == 2):
        return {}
    return compare_modes(model.potential, lambda x, t: target.log_prob(x, t, sde), dtype=dtype, device=device)


def prior_score_ratio(model, sde, dim: int, gen, dtype, device, n: int = 2000) -> float:
    """E[s_theta(x, T) . s_pi(x)] / E||s_pi(x)||^2 for x ~ pi, s_pi = -x / prior_var the prior's score:
    1 when the model's score at t = T matches the prior's, 0 for the trivial log-FP solution u = c(t)
    (zero residual, zero score), under which the reverse flow expands every particle."""
    x = sde.prior_sample(n, dim, gen, dtype, device)
    s_pi = -x / sde.prior_var
    s = model.score(x, torch.full((n,), sde.T, dtype=dtype, device=device)).detach()
    return float((s * s_pi).sum(-1).mean() / (s_pi**2).sum(-1).mean())


def dsm_diagnostics(case, model, target, sde, gen, dtype, device) -> dict:
    tc = case.config["train"]
    x0 = target.sample(case.config["metrics"]["dsm_points"], gen, dtype=torch.float64)
    batch = dsm_batch(x0, sde, tc["time_law"], tc["t_eps"], gen)
    model_terms = torch.cat([dsm_loss_terms(lambda x, t: model.score(x.to(device, dtype), t.to(device, dtype))
                                            .double().cpu(), sde, b, tc["dsm_weighting"]) for b in _chunks(batch)])
    model_terms = model_terms.detach()
    if not has_density(target):
        return {"dsm_loss": float(model_terms.mean()), "dsm_loss_exact": math.nan, "dsm_excess": math.nan,
                "dsm_excess_se": math.nan}
    exact = ExactScore(target, sde)
    exact_terms = torch.cat([dsm_loss_terms(exact.score, sde, b, tc["dsm_weighting"]) for b in _chunks(batch)])
    excess = model_terms - exact_terms.detach()
    return {"dsm_loss": float(model_terms.mean()), "dsm_loss_exact": float(exact_terms.mean()),
            "dsm_excess": float(excess.mean()), "dsm_excess_se": float(excess.std() / math.sqrt(len(excess)))}


def _chunks(batch, size: int = 50_000):
    for s in range(0, len(batch.t), size):
        yield DSMBatch(batch.x0[s:s + size], batch.t[s:s + size], batch.eps[s:s + size], batch.xt[s:s + size])


def curl_diagnostics(n, model, target, sde, box, gen, dtype, device) -> dict:
    """Curl of the score at t = 0.01 (Fig. 1) and at t ~ U(0, T), over the box."""
    out = {}
    for label, t_value in (("t0", 0.01), ("all_t", None)):
        x = box.sample(n, target.dim, gen, dtype, device)
        t = (torch.full((n,), t_value, dtype=dtype, device=device) if t_value is not None
             else sde.T * torch.rand(n, generator=gen, dtype=dtype).to(device))
        c = ops.curl(lambda xx, tt: model.score(xx, tt, create_graph=True), x, t).abs().detach()
        out[f"curl_mean_{label}"], out[f"curl_max_{label}"] = float(c.mean()), float(c.max())
    return out
