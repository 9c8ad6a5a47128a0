"""Benchmarks: speed measured as ratios against a baseline timed in the same run."""

from __future__ import annotations

import copy
import datetime
import platform
import time

import torch

from .runner import build
from .suite import expand, load_suite


def bench_ensemble(suite: str, scale: str, members: int, iterations: int, device=None) -> dict:
    """Train the first ``members`` cases of a suite one by one, then the same models as one ensemble,
    for ``iterations`` steps each; the same data, so the final weights must agree."""
    from .ensemble import train_ensemble
    from .train import train

    cases = expand(load_suite(suite), scale)[:members]
    cfg = dict(cases[0].config["train"], iterations=iterations, checkpoint_every=10**9)
    built = [build(c, device) for c in cases]
    initial = [copy.deepcopy(b[2]) for b in built]
    began = time.perf_counter()
    for case, (target, sde, model, method) in zip(cases, built):
        train(model, method, target, sde, cfg, case.config["seed"], device=device)
    one_by_one = time.perf_counter() - began
    began = time.perf_counter()
    train_ensemble(initial, [b[3] for b in built], [b[0] for b in built], built[0][1], cfg,
                   [c.config["seed"] for c in cases], device=device)
    together = time.perf_counter() - began
    diff = max((p - q).abs().max().item() for b, m in zip(built, initial)
               for p, q in zip(b[2].parameters(), m.parameters()))
    return {"suite": suite, "scale": scale, "members": len(cases), "iterations": iterations,
            "one_by_one_s": one_by_one, "ensemble_s": together, "speedup": one_by_one / together,
            "max_weight_difference": diff, "threads": torch.get_num_threads(), "device": str(device or "cpu"),
            "machine": platform.processor() or platform.machine(), "date": datetime.date.today().isoformat()}


def format_bench(result: dict) -> str:
    return "\n".join([
        "# Benchmark: ensemble training (stack_module_state + vmap) against one by one", "",
        f"Suite `{result['suite']}`, scale `{result['scale']}` train settings, the first {result['members']} cases, "
        f"{result['iterations']} iterations each; {result['device']}, {result['threads']} threads, "
        f"measured {result['date']} (`fpbench bench ensemble`).", "",
        "| one by one (s) | ensemble (s) | speed-up | max weight difference |",
        "|---:|---:|---:|---:|",
        f"| {result['one_by_one_s']:.1f} | {result['ensemble_s']:.1f} | {result['speedup']:.2f}x | "
        f"{result['max_weight_difference']:.2e} |", ""])
