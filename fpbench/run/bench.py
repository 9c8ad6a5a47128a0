"""Benchmarks: speed measured as ratios against a straightforward baseline timed in the same run.

- training: the suite's first ``members`` cases trained one by one with ``fpbench.train.loop.train``
  (the per-model autograd loop: nested ``torch.autograd.grad`` for the score and the Laplacian)
  against the same cases as one ensemble on forward-mode jets (``fpbench.train.ensemble``);
- sampling: Euler steps of the probability-flow ODE with the autograd score of each model, against
  the written-out reverse-mode score of ``fpbench.core.jet``, one model at a time and all at once;
- W2 solves: the paper's 64 x 64 grid W2^2 with the full 4096 x 4096 cost matrix built per solve
  (the authors' way), against fpbench's cached cost restricted to the histograms' supports.
"""

from __future__ import annotations

import datetime
import platform
import time
from contextlib import contextmanager
from statistics import median

import ot
import torch

from ..core import metrics as mx
from ..core import streams
from ..core.jet import SCORE_BLOCK
from ..train.ensemble import train_ensemble
from ..train.process import cpu_settings, on_cpu, onednn_keeps_float32
from .suite import build, expand, load_suite


def _timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def _train_cases(suite: str, scale: str, members: int, iterations: int):
    """The suite's first ``members`` cases of one seed (the paper suite: its 12 models, 3 targets x
    4 w_R) and the benchmark's train config for them."""
    cases = expand(load_suite(suite), scale, seeds=1)[:members]
    cfg = dict(cases[0].config["train"], iterations=iterations, checkpoint_every=10**9)
    return cases, cfg


def _ensemble(cases, cfg, device=None, compile: bool = False) -> float:
    """Seconds to train ``cases`` as one ensemble of fresh models."""
    built = [build(c, device) for c in cases]
    return _timed(lambda: train_ensemble([b[2] for b in built], [b[3] for b in built], [b[0] for b in built],
                                         built[0][1], cfg, [c.config["seed"] for c in cases], device=device,
                                         compile=compile))


def bench_training(suite: str, scale: str, members: int, iterations: int, device=None, workers: int = 1,
                   repeats: int = 3) -> dict:
    """The per-model autograd loop against the ensemble on jets: eager and compiled, in this process
    and (on the CPU, ``workers`` > 1) split among single-thread processes, each timed ``repeats``
    times from fresh models (``_rates``). Compiled rows are timed after a one-iteration warm-up that
    traces them; the tracing time is reported on its own."""

    cases, cfg = _train_cases(suite, scale, members, iterations)
    loop = [_loop(cases, cfg, device) for _ in range(repeats)]
    its = len(cases) * iterations
    out = {"members": len(cases), "iterations": iterations, "repeats": repeats, "loop_it_s": its / median(loop),
           "loop_it_s_range": (its / max(loop), its / min(loop)),
           "labels": [c.label for c in cases], "batch": cfg["dsm_batch"], "residual_points": cfg["residual_points"]}
    for name, compile in (("eager", False), ("compiled", True)):
        warm = _ensemble(cases, dict(cfg, iterations=1), device, compile) if compile else 0.0
        out[name] = _rates(its, [_ensemble(cases, cfg, device, compile) for _ in range(repeats)], loop, warmup_s=warm)
        if on_cpu(device) and workers > 1:
            pool, warm = _pool_training(suite, scale, members, iterations, workers, compile, repeats)
            out[f"pool_{name}"] = _rates(its, pool, loop, warmup_s=warm)
    out["workers"] = workers
    if on_cpu(device):  # how much of the gain is the process settings alone, and what the matmuls allow
        out["loop_settings"] = _rates(its, _loop_with_settings(suite, scale, members, iterations, repeats), loop)
        out["floor"] = matmul_floor(cases, cfg, workers, its / median(loop))
        out["profile"] = matmul_share(cases, cfg)
    return out


def _rates(its: int, seconds: list[float], loop: list[float], **extra) -> dict:
    """Iterations/s and the speed-up over the baseline loop from repeated timings: medians, with
    the range over the repeats (speed-up: slowest run against the fastest baseline run, and the
    other way round)."""
    return {"it_s": its / median(seconds), "it_s_range": (its / max(seconds), its / min(seconds)),
            "speedup": median(loop) / median(seconds), "speedup_range": (min(loop) / max(seconds),
                                                                      max(loop) / min(seconds)), **extra}


def _loop(cases, cfg, device=None) -> float:
    """Seconds for the baseline: each case trained on its own by the per-model autograd loop."""
    from ..train.loop import train

    built = [build(c, device) for c in cases]
    return _timed(lambda: [train(m, me, tg, sde, cfg, c.config["seed"], device=device)
                           for c, (tg, sde, m, me) in zip(cases, built)])


def _train_loop(suite: str, scale: str, members: int, iterations: int, threads: int, repeats: int) -> list[float]:
    """Seconds for the baseline loop in this process, ``repeats`` times, under the ensemble's process
    settings (``ensemble.cpu_settings``)."""
    torch.set_num_threads(threads)
    cases, cfg = _train_cases(suite, scale, members, iterations)
    with cpu_settings():
        return [_loop(cases, cfg) for _ in range(repeats)]


def _loop_with_settings(suite: str, scale: str, members: int, iterations: int, repeats: int) -> list[float]:
    """The baseline loop again, in a fresh process (freed memory stays reused in a process once set)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_train_loop, suite, scale, members, iterations, torch.get_num_threads(), repeats).result()


def matmul_floor(cases, cfg, processes: int, loop_it_s: float) -> dict:
    """The big matmuls alone of one training iteration, timed on one thread: 12 (n x w) @ (w x w)
    products for the parameter gradient of DSM through a written-out score (forward 2, score 2,
    backward 8), and 6 more of (d + 3) x residual_points rows for each log-FP member (forward 2,
    backward 4). Spread over ``processes`` single-thread processes, the iterations/s that no
    elementwise fusion can beat; ``bound`` is that over the loop's. Timed under the ensemble's
    process settings (``ensemble.cpu_settings``: the matmuls on the same kernels as the ensemble's),
    with the operands in cache; ``cold_us`` is one product with the caches flushed before it, as
    inside training, where the operands come from memory."""
    from .execute import training_cost

    width = cases[0].config["model"]["width"]
    a, w = torch.randn(cfg["dsm_batch"], width), torch.randn(width, width)
    with _one_thread(), cpu_settings():
        one = min(_timed(lambda: [a @ w for _ in range(12)]) for _ in range(5)) / 12  # one DSM-batch matmul
        cold = median(_cold_timed(lambda: a @ w) for _ in range(20))
    seconds = sum(12 * one + 6 * one * (training_cost(c) - cfg["dsm_batch"]) / cfg["dsm_batch"] for c in cases)
    it_s = len(cases) * processes / seconds
    return {"it_s": it_s, "bound": it_s / loop_it_s, "processes": processes, "warm_us": one * 1e6,
            "cold_us": cold * 1e6, "shape": (cfg["dsm_batch"], width)}


@contextmanager
def _one_thread():
    """Torch on one intra-op thread inside the block; its thread count restored after, also on an error."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


MATMULS = ("aten::bmm", "aten::mm", "aten::addmm", "aten::baddbmm")


def matmul_share(cases, cfg, iterations: int = 10) -> dict:
    """Where the compiled ensemble's time goes on one thread: ``cases`` trained for ``iterations``
    under ``torch.profiler`` (after a traced warm-up), the share of all operators' self time spent in
    matmul calls, and the mean time of one (dsm_batch, w) @ (w, w) product inside training (None where
    none ran in that shape). Profiling adds a little time to every operator call."""
    from torch.profiler import profile

    with _one_thread():
        _ensemble(cases, dict(cfg, iterations=1), compile=True)
        with profile(record_shapes=True) as prof:
            _ensemble(cases, dict(cfg, iterations=iterations), compile=True)
    events = prof.key_averages(group_by_input_shape=True)
    matmuls = [e for e in events if e.key in MATMULS]
    width = cases[0].config["model"]["width"]
    shape = [[cfg["dsm_batch"], width], [width, width]]
    product = [e for e in matmuls if [s[-2:] for s in e.input_shapes[:2]] == shape]
    calls = sum(e.count for e in product)
    return {"share": sum(e.self_cpu_time_total for e in matmuls) / sum(e.self_cpu_time_total for e in events),
            "product_us": sum(e.self_cpu_time_total for e in product) / calls if calls else None,
            "iterations": iterations}


def _cold_timed(fn, flush_mb: int = 64) -> float:
    """Seconds of ``fn`` right after writing ``flush_mb`` MB, more than the caches hold."""
    torch.ones(flush_mb * 2**18).add_(1.0)
    return _timed(fn)


def _train_part(suite: str, scale: str, members: int, iterations: int, part: int, parts: int,
                compile: bool) -> float:
    from .execute import split_balanced

    torch.set_num_threads(1)
    cases, cfg = _train_cases(suite, scale, members, iterations)
    return _ensemble(split_balanced(cases, parts)[part], cfg, compile=compile)


def _pool_training(suite: str, scale: str, members: int, iterations: int, workers: int,
                   compile: bool, repeats: int) -> tuple[list[float], float]:
    """(seconds for the training itself, ``repeats`` times; seconds of the warm-up): the pool is started and warmed up
    by one iteration first (process start, imports and tracing are one-off costs per run, not per
    iteration); the parts are split by ``execute.split_balanced``, as ``fpbench run --workers``."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    def parts(its):
        return zip(*[(suite, scale, members, its, k, workers, compile) for k in range(workers)])
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        warm = _timed(lambda: list(pool.map(_train_part, *parts(1))))
        return [_timed(lambda: list(pool.map(_train_part, *parts(iterations)))) for _ in range(repeats)], warm


def bench_sampling(suite: str, scale: str, members: int, n: int, steps: int, device=None) -> dict:
    """The autograd score with torch's defaults against the fast scores as the runner samples with
    them (under ``ensemble.cpu_settings``)."""
    from ..core.jet import BatchedMLP, fast_score
    from ..core.samplers import euler_ode, uniform_grid

    cases = expand(load_suite(suite), scale, seeds=1)[:members]
    built = [build(c, device) for c in cases]
    models, sde = [b[2] for b in built], built[0][1]
    ts = uniform_grid(sde.T, steps)
    x_T = sde.prior_sample(n, 2, streams.fixed(streams.BENCH)).to(device)
    autograd = _timed(lambda: [euler_ode(lambda x, t, m=m: m.score(x, t), sde, x_T, ts) for m in models])
    with cpu_settings(device):
        one = _timed(lambda: [euler_ode(fast_score(m), sde, x_T, ts) for m in models])
        whole = _timed(lambda: [euler_ode(fast_score(m, block=n), sde, x_T, ts) for m in models])
    batched = BatchedMLP(models)
    e = len(models)

    def all_at_once(x, t):
        t = torch.as_tensor(t, dtype=x.dtype).expand(x.shape[:-1])
        return batched.score(x.reshape(e, n, 2), t.reshape(e, n)).reshape(-1, 2)
    with cpu_settings(device):
        together = _timed(lambda: euler_ode(all_at_once, sde, x_T.repeat(e, 1), ts))
    work = e * n * steps
    return {"members": e, "n": n, "steps": steps, "autograd_ps": work / autograd, "fast_ps": work / one,
            "unblocked_ps": work / whole, "batched_ps": work / together}


def bench_w2(n: int = 60_000, solves: int = 5) -> dict:
    grid = mx.PAPER_GRID
    g = streams.fixed(streams.BENCH)
    pairs = [(mx.grid_histogram(torch.randn(n, 2, generator=g), grid),
              mx.grid_histogram(0.9 * torch.randn(n, 2, generator=g) + 0.1, grid)) for _ in range(solves)]

    def authors(a, b):  # a fresh full cost matrix over all 4096 nodes, zero-mass bins included
        nodes = grid.nodes()
        return ot.emd2(a / a.sum(), b / b.sum(), ot.dist(nodes, nodes), numItermax=10**8)
    base = _timed(lambda: [authors(a, b) for a, b in pairs])
    mx.grid_w2_from_weights(*pairs[0], grid)  # fill the cost cache, as any run after its first solve
    ours = _timed(lambda: [mx.grid_w2_from_weights(a, b, grid) for a, b in pairs])
    same = max(abs(authors(a, b) - mx.grid_w2_from_weights(a, b, grid)) for a, b in pairs[:2])
    return {"solves": solves, "n": n, "authors_solves_s": solves / base, "fast_solves_s": solves / ours,
            "max_difference": float(same)}


def method_step_seconds(cases: dict, iterations: int, repeats: int = 3, device=None) -> dict[str, dict]:
    """Seconds per training step of each case's method ({label: case}), one fresh model at a time on one
    thread, by the path a run trains it by (an ensemble of one, eager jets, where ``can_ensemble``; else the
    per-model loop), each case timed in turn ``repeats`` times after a one-step warm-up: {label: {"s": the
    median, "range": (fastest, slowest), "path": "ensemble" or "loop"}}. Cost ratios between methods timed in
    one call share the machine's load."""
    from ..train.ensemble import can_ensemble

    def path(case) -> str:
        _target, _sde, model, method = build(case, device)
        return "ensemble" if can_ensemble(method, model) else "loop"

    def seconds(label: str, steps: int) -> float:  # a fresh model each time (``_ensemble`` and ``_loop`` build it)
        cfg = dict(cases[label].config["train"], iterations=steps, checkpoint_every=10**9, log_every=10**9)
        return (_ensemble if paths[label] == "ensemble" else _loop)([cases[label]], cfg, device)

    paths = {label: path(case) for label, case in cases.items()}
    times = {label: [] for label in cases}
    with _one_thread():
        for label in cases:
            seconds(label, 1)  # warm-up (first-call costs)
        for _ in range(repeats):
            for label in cases:
                times[label].append(seconds(label, iterations) / iterations)
    return {label: {"s": median(t), "range": (min(t), max(t)), "path": paths[label]} for label, t in times.items()}


def bench_methods(suite: str, scale: str, iterations: int, repeats: int, device=None) -> dict[str, dict]:
    """``method_step_seconds`` of the suite's methods: its first case per model kind, method and set of loss
    terms in use (weights 0 and nonzero differ; one nonzero weight stands for the others), labelled as in the
    case labels (``fp(w_r=0.1)``, ``score:dsm()``); the first is the ratios' baseline."""
    from ..train.methods import make_method

    firsts = {}
    for case in expand(load_suite(suite), scale, seeds=1):
        m = case.config["method"]
        used = frozenset(k for k, w in make_method(m["name"], **m["params"]).weights.items() if w)
        firsts.setdefault((case.config["model"]["kind"], m["name"], used), case)
    return method_step_seconds({c.label.split("/")[1]: c for c in firsts.values()}, iterations, repeats, device)


def run_bench(suite: str = "paper", scale: str = "quick", members: int = 12, iterations: int = 50,
              n: int = 20_000, steps: int = 50, device=None, workers: int = 2, repeats: int = 3) -> dict:
    return {"training": bench_training(suite, scale, members, iterations, device, workers, repeats),
            "methods": bench_methods(suite, scale, iterations, repeats, device),
            "sampling": bench_sampling(suite, scale, members, n, steps, device), "w2": bench_w2(),
            "suite": suite, "scale": scale, "device": str(device or "cpu"), "threads": torch.get_num_threads(),
            "machine": f"{platform.machine()} {platform.processor()}".strip(), "torch": torch.__version__,
            "date": datetime.date.today().isoformat(), "onednn": onednn_keeps_float32()}


def format_bench(r: dict) -> str:
    t, s, w = r["training"], r["sampling"], r["w2"]
    return "\n".join([
        "# Performance: fpbench's kernels against the straightforward ones, measured in one run", "",
        f"Measured {r['date']} by `fpbench bench` on {r['device']} ({r['machine']}, {r['threads']} torch threads, "
        f"torch {r['torch']}); suite `{r['suite']}` at scale `{r['scale']}`. Training rows: the median of "
        f"{t['repeats']} timings from fresh models, with their range in brackets (for a ratio: the slowest "
        "run against the fastest baseline run, and the other way round).", "",
        "| what | baseline (per model, autograd) | fpbench | ratio |", "|---|---:|---:|---:|",
        *_training_rows(t),
        f"| sampling, particle-steps/s (Euler PF-ODE, {s['members']} models x {s['n']:,} particles x {s['steps']} "
        f"steps) | {s['autograd_ps']:.3g} | {s['fast_ps']:.3g} (reverse-mode score) | "
        f"{s['fast_ps'] / s['autograd_ps']:.2f}x |",
        f"| sampling, the same score on all {s['n']:,} particles at once (before 2026-12-05) against blocks of "
        f"{SCORE_BLOCK:,} rows (bit-identical) | {s['unblocked_ps']:.3g} | {s['fast_ps']:.3g} | "
        f"{s['fast_ps'] / s['unblocked_ps']:.2f}x |",
        f"| sampling, all models in one batched call | {s['autograd_ps']:.3g} | {s['batched_ps']:.3g} | "
        f"{s['batched_ps'] / s['autograd_ps']:.2f}x |",
        f"| grid W2² solves/s (64 x 64 grid, n = {w['n']:,}; baseline: full cost matrix built per solve) | "
        f"{w['authors_solves_s']:.2f} | {w['fast_solves_s']:.2f} (cached cost, supports only) | "
        f"{w['fast_solves_s'] / w['authors_solves_s']:.2f}x |", "",
        f"The two W2² computations agree to {w['max_difference']:.1e}. Training ratios are for the whole "
        "iteration (data draws, DSM, the log-FP residual where w_R > 0, backward, Adam). The ensemble "
        "trains under `fpbench.train.process.cpu_settings`: subnormal floats flushed to zero, freed memory kept "
        "for reuse and, where a probe shows oneDNN keeps them float32"
        f" ({'so on this CPU' if r.get('onednn') else 'not so on this CPU, so they stay on MKL'}), float32 "
        "matmuls on oneDNN's kernels instead of MKL's; the baseline runs with torch's and glibc's "
        "defaults, and the reference row shows what those settings alone do for the baseline. Sampling: the "
        "fast scores run under the same settings, as the runner samples; freed memory is reused in both "
        "sampling columns (set by the training rows before them, for the rest of the process). "
        "Compiled rows exclude the one-off tracing, timed on its "
        f"own: {t['compiled']['warmup_s']:.0f} s in this process"
        + (f", {t['pool_compiled']['warmup_s']:.0f} s for the pool (start, imports and tracing)"
           if "pool_compiled" in t else "") + ".", *_bound_note(t), "", *_methods_rows(r), ""])


def _methods_rows(r: dict) -> list[str]:
    """The per-step cost of each method of the suite (``bench_methods``), over the first's."""
    timed = r["methods"]
    base = next(iter(timed.values()))["s"]
    t = r["training"]
    return [f"Training step of each method of suite `{r['suite']}` (its first case per method and set of loss terms; "
            f"one fresh model, one thread, the path its run trains it by; the median of {t['repeats']} timings of "
            f"{t['iterations']} steps, the methods timed in turn, [fastest, slowest]), against the first's:", "",
            "| method | path | ms per step | ratio |", "|---|---|---:|---:|",
            *[f"| {label} | {v['path']} | {1e3 * v['s']:.2f} [{1e3 * v['range'][0]:.2f}, {1e3 * v['range'][1]:.2f}] | "
              f"{v['s'] / base:.2f}x |" for label, v in timed.items()]]


def _bound_note(t: dict) -> list[str]:
    if "floor" not in t:
        return []
    best = max((v for k, v in t.items() if isinstance(v, dict) and "speedup" in v), key=lambda v: v["speedup"])
    f = t["floor"]
    width = f["shape"][1]
    return ["", f"The big matmuls of the parameter gradient (12 products of the DSM batch through the {width} x "
            f"{width} layers, 6 more per log-FP member), with no other work at all, would give {f['bound']:.2f}x on "
            f"{f['processes']} process(es); the fastest row reaches {best['speedup']:.2f}x, "
            f"{best['speedup'] / f['bound']:.0%} of that bound. The bound times each product with its operands "
            f"in cache; inside training they come from memory (one ({f['shape'][0]}, {width}) @ "
            f"({width}, {width}) product, one thread: {f['warm_us']:.0f} us in cache, "
            f"{f['cold_us']:.0f} us with the caches flushed first, median of 20, in this run). The rest is elementwise "
            "work (softplus and its derivatives: exp and log on every activation), Adam and the data draws.",
            *_profile_note(t)]


def _profile_note(t: dict) -> list[str]:
    """What the products leave to gain: the compiled ensemble's profile against the products' in-cache time."""
    if "profile" not in t:
        return []
    p, f = t["profile"], t["floor"]
    width = f["shape"][1]
    lines = ["", f"Profiled in this run (`torch.profiler`, one thread, the compiled ensemble for {p['iterations']} "
             f"iterations): matmul calls take {p['share']:.0%} of its operators' time, so with all other work free "
             f"it could run at most {1 / p['share']:.2f}x faster with its products as fast as they run inside it."]
    if p["product_us"]:
        in_cache = p["share"] * f["warm_us"] / p["product_us"]
        lines[-1] += (f" Inside it one ({f['shape'][0]}, {width}) @ ({width}, {width}) product takes "
                      f"{p['product_us']:.0f} us against {f['warm_us']:.0f} us in cache; with every product at "
                      f"its in-cache speed and all other work free, at most {1 / in_cache:.2f}x (an estimate: "
                      "it scales all matmul time by this one product's ratio).")
    return lines


def _training_rows(t: dict) -> list[str]:
    what = (f"training, iterations/s ({t['members']} models, DSM batch {t['batch']}, {t['residual_points']} "
            f"residual points, {t['iterations']} iterations each)")
    rows = {"eager": f"{what}: the ensemble on jets, this process",
            "compiled": "the same, loss terms through `torch.compile` (`--compile`)",
            "pool_eager": f"the ensemble split among {t['workers']} single-thread processes (`--executor process "
                          f"--workers {t['workers']}`), wall clock",
            "pool_compiled": "the same, compiled (`--executor process --workers "
                             f"{t['workers']} --compile`), wall clock",
            "loop_settings": "for reference: the baseline loop itself under the ensemble's process settings "
                             "(`ensemble.cpu_settings`)"}
    loop = _with_range(t["loop_it_s"], t["loop_it_s_range"], ".1f")
    lines = [f"| {label} | {loop} | {_with_range(t[name]['it_s'], t[name]['it_s_range'], '.1f')} | "
             f"{_with_range(t[name]['speedup'], t[name]['speedup_range'], '.2f', 'x')} |"
             for name, label in rows.items() if name in t]
    if "floor" in t:
        f = t["floor"]
        lines.append(f"| bound: the big matmuls alone, on {f['processes']} single-thread process(es), no other work | "
                     f"{loop} | {f['it_s']:.1f} | {f['bound']:.2f}x |")
    return lines


def _with_range(value: float, bounds: tuple[float, float], spec: str, unit: str = "") -> str:
    """'median (low-high)', or the value alone where it was timed once."""
    low, high = bounds
    if low == high:
        return f"{value:{spec}}{unit}"
    return f"{value:{spec}}{unit} ({low:{spec}}-{high:{spec}})"
