"""The one prepared run on a lent GPU machine (``scripts/gpu_check.sh``), every result under one folder:

1. ``environment.json``: torch, the device's name, CUDA's version;
2. ``device-tests.log``: ``tests/test_device.py`` on the device (jets, residual, samplers and ensemble
   training against the CPU in float64);
3. ``performance-<device>.md``: ``fpbench bench`` on the device;
4. ``paper-throughput.json``: the paper suite's 12 potential models trained as one ensemble at the
   authors' settings (DSM batch 200,000, 50,000 residual points) for a few steps: steps/s and the
   projected time of the paper's 100,000 steps;
5. ``results/``: ``fpbench run paper --scale paper --max-minutes M``, as far as it gets; the store's
   checkpoints resume in a later call once carried back.

``tiny`` shrinks every part to seconds on a CPU (what CI runs); ``summary.json`` says what ran and how
each part ended.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ..core.errors import FpbenchError

PAPER_STEPS = 100_000


def environment(device: str) -> dict:
    import torch

    out = {"torch": torch.__version__, "device": device, "cuda_available": torch.cuda.is_available()}
    if device == "cuda" and torch.cuda.is_available():
        out.update({"name": torch.cuda.get_device_name(0), "cuda": torch.version.cuda,
                    "memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30})
    return out


def device_tests(device: str, out: Path) -> dict:
    env = dict(os.environ, FPBENCH_TEST_DEVICE=device)
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests/test_device.py", "-q", "-p", "no:cacheprovider"],
                          env=env, capture_output=True, text=True)
    (out / "device-tests.log").write_text(proc.stdout + proc.stderr)
    return {"returncode": proc.returncode, "last_line": (proc.stdout.strip().splitlines() or [""])[-1]}


def bench(device: str, out: Path, tiny: bool) -> dict:
    from .bench import format_bench, run_bench

    sizes = {"members": 2, "iterations": 2, "n": 500, "steps": 2, "repeats": 1, "scale": "smoke"} if tiny else {}
    text = format_bench(run_bench(device=_torch_device(device), **sizes))
    path = out / f"performance-{device}.md"
    path.write_text(text)
    return {"report": path.name}


def paper_throughput(device: str, steps: int, tiny: bool, compile: bool = False) -> dict:
    """Steps/s of the paper suite's 12 potential models as one ensemble at the authors' settings
    (``tiny``: smoke sizes), the first step (warm-up, compilation) left out of the rate."""
    import copy

    import torch

    from ..train.ensemble import train_ensemble
    from .suite import build, expand, load_suite

    cases = expand(load_suite("paper"), "smoke" if tiny else "paper", seeds=1)
    dev = _torch_device(device)
    built = [build(c, dev) for c in cases]
    cfg = copy.deepcopy(cases[0].config["train"])
    cfg.update({"iterations": steps + 1, "log_every": steps + 1, "checkpoint_every": 10**9})
    if dev is not None and dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    times = []

    def clock(iteration, _models):
        if dev is not None and dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter())

    train_ensemble([b[2] for b in built], [b[3] for b in built], [b[0] for b in built], built[0][1], cfg,
                   [c.config["seed"] for c in cases], device=dev, compile=compile, probe=(1, clock))
    rate = steps / (times[-1] - times[0])
    return {"models": len(cases), "dsm_batch": cfg["dsm_batch"], "residual_points": cfg["residual_points"],
            "steps_timed": steps, "ensemble_steps_per_second": rate,
            "projected_hours_for_paper_steps": PAPER_STEPS / rate / 3600, "compile": compile}


def chunked_paper_run(device: str, out: Path, minutes: float, tiny: bool) -> dict:
    scale = "smoke" if tiny else "paper"
    command = [sys.executable, "-m", "fpbench", "run", "paper", "--scale", scale, "--device", device, "--results",
               str(out / "results"), "--max-minutes", f"{minutes:g}"]
    proc = subprocess.run(command, capture_output=True, text=True)
    (out / "paper-run.log").write_text(proc.stdout + proc.stderr)
    status = {0: "finished", 4: "stopped at the time budget (resumable)"}.get(proc.returncode, "failed")
    return {"command": " ".join(command[1:]), "returncode": proc.returncode, "status": status}


def _torch_device(device: str):
    import torch

    return None if device == "cpu" else torch.device(device)


def main(device: str, out: Path, tiny: bool = False, steps: int = 20, run_minutes: float = 3.0,
         skip: tuple[str, ...] = ()) -> dict:
    """Run every part not in ``skip``, in order, each recorded in ``summary.json`` as it ends (a part
    that raises is recorded with its error and the next one runs)."""
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"device": device, "tiny": tiny, "parts": {}}
    parts = [("environment", lambda: environment(device)), ("device_tests", lambda: device_tests(device, out)),
             ("bench", lambda: bench(device, out, tiny)),
             ("paper_throughput", lambda: paper_throughput(device, 2 if tiny else steps, tiny)),
             ("chunked_paper_run", lambda: chunked_paper_run(device, out, 0.05 if tiny else run_minutes, tiny))]
    unknown = set(skip) - {name for name, _ in parts}
    if unknown:
        raise FpbenchError(f"unknown part(s) {sorted(unknown)}; parts: {', '.join(n for n, _ in parts)}")
    for name, part in parts:
        if name in skip:
            summary["parts"][name] = {"ok": True, "skipped": True}
            continue
        began = time.perf_counter()
        try:
            result = {"ok": True, **part()}
        except Exception as err:  # recorded; the next part still runs
            result = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        result["seconds"] = round(time.perf_counter() - began, 1)
        summary["parts"][name] = result
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        print(f"{name}: {json.dumps(result)}", flush=True)
    return summary


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", required=True)
    parser.add_argument("--tiny", action="store_true", help="every part at smoke size (a CPU in seconds)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps at the authors' settings")
    parser.add_argument("--run-minutes", type=float, default=3.0, help="budget of the chunked paper-scale run")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out")
    args = parser.parse_args()
    summary = main(args.device, Path(args.out), args.tiny, args.steps, args.run_minutes,
                   tuple(p for p in args.skip.split(",") if p))
    sys.exit(0 if all(p["ok"] for p in summary["parts"].values()) else 1)
