"""Run cases: train -> sample -> metrics -> store. Each stage's output is stored before the next
begins, so a rerun after a crash resumes at the first missing stage (training itself resumes
from its last checkpoint) and finished cases are skipped."""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import time

import numpy as np
import torch

from ..core import metrics as mx
from ..core import streams
from ..core.jet import compiled_score, fast_score
from ..core.models import in_dtype, make_model
from ..core.samplers import sample_pair
from ..train.loop import progress_bar, train
from ..train.methods import make_method
from ..train.process import cpu_settings
from .bundle import PLATFORM_KEYS, platform_here, platforms_file
from .evaluate import distance, evaluate, grid_of, time_grid, with_convergence
from .store import SAMPLES_FILE, Store, read_npz, samples_path, write_json, write_npz
from .suite import Case, build


def run_case(case: Case, store: Store, device=None, progress: bool = False, log=print, deadline=None) -> dict:
    """Run one case to completion (or skip it if done); returns its metrics record. Past ``deadline``
    (a ``train.Deadline``) training stops with ``TimeBudgetReached``, its checkpoint kept."""
    key, out = case.key, store.case_dir(case.key)
    if store.is_done(key):
        _repair(case, store, device, log)
        log(f"skip   {case.label} [{key}] (done)")
        return with_convergence(case, store, device)
    out.mkdir(parents=True, exist_ok=True)
    store.clear_failure(key)  # a rerun retries a failed case
    write_json(out / "config.json", case.config)
    target, sde, model, method = build(case, device)
    train_info = _trained(case, model, method, target, sde, out, device, progress, log, deadline, store)
    model.eval()
    hist, sample_seconds = _sampled(case, model, target, sde, out, device, progress, log)
    metrics = evaluate(case, model, target, sde, hist, store, device, train_info["history"])
    return _finished(case, out, train_info, sample_seconds, metrics, device, log)


def _finished(case: Case, out, train_info: dict, sample_seconds: float, metrics: dict, device, log) -> dict:
    """Write the case's record (``metrics.json``, last: its presence means done) and return it."""
    record = {"key": case.key, "config": case.config, "train": train_info, "sample_seconds": sample_seconds,
              "metrics": metrics, "device": str(device or "cpu"), "torch": torch.__version__, "host": platform.node()}
    write_json(out / "metrics.json", record)
    log(f"done   {case.label} [{case.key}]")
    return record


def run_external(case: Case, store: Store, device=None, progress: bool = False, log=print) -> dict:
    """Sample and evaluate a user's model (``fpbench.run.external``; ``case`` from ``external_case``) like
    any case, with no training; returns its record (a stored one when done)."""
    from .external import ExternalModel, check_protocol, load_external

    def load(target):
        model = ExternalModel(load_external(case.config["model"]["spec"], case.config["seed"]), target.dim)
        check_protocol(model, case.config["model"]["spec"])
        return model

    return run_untrained(case, store, load, {"external": case.config["model"]["spec"]}, device, progress, log)


def run_untrained(case: Case, store: Store, load, info: dict, device=None, progress: bool = False, log=print,
                  with_oracle: bool = True, compile: bool = False) -> dict:
    """Sample and evaluate a model trained elsewhere (``load(target)`` returns it) like any case, with no
    training (``info`` stands in the record's training part); returns its record (a stored one when done).
    ``with_oracle`` False leaves out the exact-score oracle (``evaluate``); ``compile``: the sampler's score
    through ``torch.compile`` (``jet.compiled_score``)."""
    from ..core.sde import make_sde
    from ..core.targets import make_target

    key, out, cfg = case.key, store.case_dir(case.key), case.config
    if store.is_done(key):
        log(f"skip   {case.label} [{key}] (done)")
        return store.metrics(key)
    target = make_target(cfg["target"]["name"], **cfg["target"]["params"])
    sde = make_sde(cfg["sde"]["name"], **cfg["sde"]["params"])
    model = load(target)
    out.mkdir(parents=True, exist_ok=True)
    store.clear_failure(key)  # a rerun retries a failed case
    write_json(out / "config.json", cfg)
    hist, sample_seconds = _sampled(case, model, target, sde, out, device, progress, log, compile)
    metrics = evaluate(case, model, target, sde, hist, store, device, with_oracle=with_oracle)
    return _finished(case, out, {**info, "history": []}, sample_seconds, metrics, device, log)


def _repair(case: Case, store: Store, device, log) -> None:
    """A finished case whose weights, history or samples were damaged since (each set aside by
    ``Store.cached``) gets them again: retrained by the path its record names (``retrain``: the same
    arithmetic, so the same weights), or resampled with the same seeds. The retrained history is checked
    against the recorded one, bit for bit: where they differ (the recorded path cannot be taken here, e.g.
    no C++ compiler for compiled terms), the samples and metrics are recomputed from the new weights, so a
    case never holds a model that does not match its own metrics."""
    out = store.case_dir(case.key)
    trained = _stored_weights(out) is not None and Store.cached(out / "train.json") is not None
    sampled = store.samples(case.key) is not None
    if trained and sampled:
        return
    lost = [what for what, ok in (("weights and history", trained), ("samples", sampled)) if not ok]
    log(f"repair {case.label} [{case.key}]: {', '.join(lost)} recomputed")
    recorded = store.metrics(case.key)["train"]
    if not trained:
        retrain(case, store, device, recorded, log)
        if Store.cached(out / "train.json")["history"] != recorded["history"]:
            log(f"repair {case.label} [{case.key}]: the retrained history differs from the recorded one (trained "
                f"{_path_name(recorded)} before); its samples and metrics are recomputed")
            (out / "metrics.json").unlink()
            samples_path(out).unlink(missing_ok=True)
            run_case(case, store, device, log=log)
            return
    if not sampled:
        target, sde, model, _method = build(case, device)
        model.load_state_dict(_stored_weights(out))
        model.eval()
        _sampled(case, model, target, sde, out, device, False, log)


@contextlib.contextmanager
def _recorded_threads(recorded: dict):
    """Torch's threads set to the count a train record names (unchanged where it names none), restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(recorded.get("threads", threads))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def retrain(case: Case, store: Store, device, recorded: dict, log=print) -> None:
    """Train ``case`` again by the path ``recorded`` (its train record) names: an ensemble (of one) with the
    loss terms compiled or not, or the per-model loop, on the torch threads it names."""
    with _recorded_threads(recorded):
        _retrain(case, store, device, recorded, log)


def _retrain(case: Case, store: Store, device, recorded: dict, log) -> None:
    if recorded.get("path", "ensemble") == "ensemble" and ensemble_key(case) is not None:
        failed = train_group([case], store, device, log, compile=recorded.get("compiled", False))
        if failed:
            raise RuntimeError(f"retraining {case.label} failed: {failed[case.key]}")
        return
    target, sde, model, method = build(case, device)
    _trained(case, model, method, target, sde, store.case_dir(case.key), device, False, log, store=store)


def retrain_prefix(case: Case, source: Store, steps: int, recorded: dict, device=None, log=print) -> list[dict]:
    """The loss history of ``case``'s first ``steps`` training iterations, trained again from scratch by the
    path ``recorded`` (its train record) names: an ensemble of one (a member trains to the same numbers in
    any ensemble), compiled or not, on its torch threads; a warm-started case starts from ``source``'s
    weights of its source case. Only ensemble-trained cases: the per-model loop raises ValueError."""
    from ..train.ensemble import train_ensemble

    if recorded.get("path", "ensemble") != "ensemble" or ensemble_key(case) is None:
        raise ValueError(f"{case.label} was trained by {_path_name(recorded)}: only an ensemble's members retrain "
                         "step by step")
    with _recorded_threads(recorded):
        target, sde, model, method = build(case, device)
        _warm_start(case, model, source, device, log)
        [result] = train_ensemble([model], [method], [target], sde, case.config["train"], [case.config["seed"]],
                                  [case.label], device, compile=recorded.get("compiled", False), until=steps)
    if isinstance(result, Exception):
        raise result
    return result.history


def _path_name(recorded: dict) -> str:
    path = recorded.get("path", "unrecorded")
    return f"{'compiled' if recorded.get('compiled') else 'eager'} ensemble" if path == "ensemble" else path


def ensemble_key(case: Case) -> str | None:
    """Cases with the same key can train as one ensemble (same SDE, model shape and train config,
    fpbench MLPs with built-in loss terms); None when this case cannot."""
    from ..train.ensemble import can_ensemble

    cfg = case.config
    params = {k: v for k, v in cfg["model"].items() if k != "kind"}
    try:
        method = make_method(cfg["method"]["name"], **cfg["method"]["params"])
        model = make_model(cfg["model"]["kind"], 1, **params)
    except ValueError:
        return None  # reported when the case itself runs
    if not can_ensemble(method, model):
        return None
    dim = cfg["target"].get("params", {}).get("dim")
    warm = getattr(method, "warm_start_from", None) is not None  # trained after their sources, as a group
    return json.dumps([cfg["sde"], cfg["model"], cfg["train"], dim, warm], sort_keys=True)


def train_groups(cases: list[Case], store: Store, device=None, log=print, compile: bool = False,
                 deadline=None, progress: bool = False) -> dict[str, str]:
    """Train, as ensembles, the untrained cases that share an ``ensemble_key``; each member's weights
    and history land in its own case directory. A member whose loss turns non-finite fails alone:
    it is marked failed in the store and returned as {key: reason}; the others finish."""
    groups: dict[str, list[Case]] = {}
    for case in cases:
        trained = (store.is_done(case.key) or _stored_weights(store.case_dir(case.key)) is not None
                   or store.trained_source(case) is not None)
        key = None if trained else ensemble_key(case)
        if key is not None:
            groups.setdefault(key, []).append(case)
    failed: dict[str, str] = {}
    # warm-started members need their sources' weights: the groups without them train first
    for members in sorted(groups.values(), key=lambda m: warm_start_case(m[0]) is not None):
        failed.update(train_group(members, store, device, log, compile, deadline, progress))
    return failed


def train_group(members: list[Case], store: Store, device=None, log=print, compile: bool = False, deadline=None,
                progress: bool = False) -> dict[str, str]:
    """Train ``members`` (one ``ensemble_key``) as one ensemble; {key: reason} of the members that failed."""
    from ..train.ensemble import compiled_in_effect, train_ensemble

    failed: dict[str, str] = {}
    built = [build(c, device) for c in members]
    for case, (_, _, model, _) in zip(members, built):
        _warm_start(case, model, store, device, log)
    log(f"train  {len(members)} case(s) as one ensemble")
    ckpt = store.root / "ensembles" / (hashlib.sha256("".join(c.key for c in members).encode()).hexdigest()[:16]
                                       + ".pt")
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    platforms = platforms_so_far(ckpt)
    results = train_ensemble([b[2] for b in built], [b[3] for b in built], [b[0] for b in built], built[0][1],
                             members[0].config["train"], [c.config["seed"] for c in members],
                             [c.label for c in members], device, checkpoint=ckpt, compile=compile,
                             deadline=deadline, progress=progress)
    for case, (_, _, model, _), res in zip(members, built, results):
        out = store.case_dir(case.key)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", case.config)
        if isinstance(res, Exception):
            store.mark_failed(case.key, case.label, res)
            failed[case.key] = f"{type(res).__name__}: {res}"
            log(f"failed {case.label} [{case.key}]: {res}")
            continue
        _save_trained(model, {"seconds": res.seconds, "iterations": res.iterations, "history": res.history,
                              "ensemble": len(members), "path": "ensemble", "compiled": compiled_in_effect(compile),
                              "threads": torch.get_num_threads(), "platforms": platforms},
                      out)
    _drop_checkpoint(ckpt)
    return failed


def platforms_so_far(checkpoint) -> list[dict]:
    """The platforms (``bundle.PLATFORM_KEYS``) a training has run on, this one included: a run stopped by
    ``--max-minutes`` and resumed from its checkpoint on another machine trained on both, and its numbers
    are then reproduced bit for bit on neither (``fpbench.run.audit``); a checkpoint that came without them
    (an older fpbench's) ran somewhere unknown, listed with every key None. Kept beside the checkpoint
    (``bundle.platforms_file``), and in the case's train record once it has trained."""
    side = platforms_file(checkpoint)
    stored = Store.cached(side) if checkpoint.exists() else None
    seen = list((stored or {}).get("platforms", []))
    if checkpoint.exists() and not seen:  # a checkpoint from before platforms were kept: where it ran is unknown
        seen.append({k: None for k in PLATFORM_KEYS})
    if (here := platform_here()) not in seen:
        seen.append(here)
    write_json(side, {"platforms": seen})
    return seen


def _drop_checkpoint(checkpoint) -> None:
    """A finished training's checkpoint and the platforms kept beside it."""
    checkpoint.unlink(missing_ok=True)
    platforms_file(checkpoint).unlink(missing_ok=True)


def _reuse_training(case: Case, source, out, log) -> None:
    """Copy the weights and history of ``source`` (a case with ``case``'s training settings, ``train_key``)
    into ``case``'s directory: a case that differs only in how it is sampled or measured is evaluated on the
    same model, never retrained."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    for name in ("model.pt", "train.json"):
        tmp = out / f".{name}.tmp"
        shutil.copyfile(source / name, tmp)
        tmp.replace(out / name)
    log(f"reuse  {case.label} [{case.key}]: the weights trained for case {source.name} (same training settings)")


def _save_trained(model, info: dict, out) -> None:
    tmp = out / ".model.pt.tmp"
    torch.save(model.state_dict(), tmp)
    tmp.replace(out / "model.pt")
    write_json(out / "train.json", info)


def warm_start_case(case: Case) -> Case | None:
    """The case whose trained weights start this one (a method with ``warm_start_from``, e.g. ``warm_fp``:
    the same configuration with that method), or None."""
    from ..train.methods import make_method

    source = getattr(make_method(case.config["method"]["name"], **case.config["method"]["params"]),
                     "warm_start_from", None)
    if source is None:
        return None
    return Case({**case.config, "method": json.loads(json.dumps(source))})


def _warm_start(case: Case, model, store: Store, device, log, poll: float = 2.0) -> None:
    """Load the warm-start source's trained weights into ``model``. Where the store lacks them, this
    process runs the source case first if it holds or gets its lock; if another process holds it, this
    waits for its weights (a task writes its non-warm members' weights before it waits on anything, so
    two tasks never wait on each other), and fails clearly if that run fails."""
    from filelock import Timeout

    source = warm_start_case(case)
    if source is None:
        return
    while (weights := _stored_weights(store.case_dir(source.key))) is None:
        if (failure := store.failure(source.key)) is not None and source.key not in store.held:
            raise RuntimeError(f"warm start of {case.label}: its source {source.label} failed: {failure['message']}")
        if source.key in store.held:
            run_case(source, store, device, log=log)
            continue
        lock = store.case_lock(source.key)
        try:
            lock.acquire(timeout=0)
        except Timeout:  # another process is running the source: its weights come before its end
            time.sleep(poll)
            continue
        try:
            log(f"warm   {case.label}: first its source {source.label}")
            store.held.add(source.key)
            run_case(source, store, device, log=log)
        finally:
            store.held.discard(source.key)
            lock.release()
    model.load_state_dict(weights)


def _stored_weights(out):
    """The case's trained weights, or None when absent or damaged (set aside: it trains again)."""
    return Store.cached(out / "model.pt", lambda p: torch.load(p, weights_only=True))


def _trained(case, model, method, target, sde, out, device, progress, log, deadline=None, store=None) -> dict:
    weights, info = _stored_weights(out), Store.cached(out / "train.json")
    if (weights is None or info is None) and store is not None and (source := store.trained_source(case)):
        _reuse_training(case, source, out, log)
        weights, info = _stored_weights(out), Store.cached(out / "train.json")
    if weights is not None and info is not None:
        model.load_state_dict(weights)
        return info
    log(f"train  {case.label} [{case.key}]")
    if store is not None:
        _warm_start(case, model, store, device, log)
    ckpt = out / "checkpoint.pt"
    out.mkdir(parents=True, exist_ok=True)
    platforms = platforms_so_far(ckpt)
    result = train(model, method, target, sde, case.config["train"], case.config["seed"], case.label,
                   checkpoint=ckpt, progress=progress, device=device, deadline=deadline)
    info = {"seconds": result.seconds, "iterations": result.iterations, "history": result.history, "path": "loop",
            "threads": torch.get_num_threads(), "platforms": platforms}
    _save_trained(model, info, out)
    _drop_checkpoint(ckpt)
    return info


def _sampled(case, model, target, sde, out, device, progress, log, compile: bool = False):
    stored = Store.cached(samples_path(out), read_npz)
    if stored is not None:
        return stored, float(stored["seconds"])
    cfg, grid = case.config["sample"], grid_of(case)
    log(f"sample {case.label} [{case.key}] n={cfg['n']}")
    ts = time_grid(case, sde.T)
    began = time.perf_counter()
    with cpu_settings(device), progress_bar(cfg["n"], f"sample {case.label}", progress) as bar:
        model = in_dtype(model, getattr(torch, cfg["dtype"]))
        score = compiled_score(model) if compile else fast_score(model)
        x_ode, x_sde = sample_pair(score, sde, cfg["n"], target.dim, ts,
                                   seed=streams.seed_for(case.config["seed"], streams.SAMPLERS),
                                   scheme=cfg["scheme"], chunk=cfg["chunk"], noise_last_step=cfg["noise_last_step"],
                                   dtype=getattr(torch, cfg["dtype"]), device=device, progress=bar.update)
    seconds = time.perf_counter() - began
    x_p0 = target.sample(cfg["n"], streams.generator(case.config["seed"], streams.P0))
    samples = {"ode": x_ode, "sde": x_sde, "p0": x_p0}
    if distance(case) != "grid":  # grids do not scale with d: keep the points
        hist = {k: x.float().numpy() for k, x in samples.items()}
    else:
        hist = {k: mx.grid_histogram(x, grid) for k, x in samples.items()}
    hist.update({"ode_points": x_ode[:2000].numpy(), "sde_points": x_sde[:2000].numpy(),
                 "seconds": np.array(seconds)})
    write_npz(out / SAMPLES_FILE, **hist)
    return hist, seconds


