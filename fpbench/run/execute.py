"""Run a suite's case grid through one executor interface.

The grid is cut into *tasks*: each group of cases that can train as one ensemble (same SDE, model
shape and train config, built-in loss terms; ``fpbench.train.ensemble``) is split into at most
``workers`` tasks, and every other case is a task of its own. A task trains its ensemble, then
samples and evaluates each case, all into the shared results store, so any executor that can
call ``run_task`` runs the grid:

- ``auto`` (the command line's default, ``fast_settings``): a process pool with one worker per core and
  the loss terms compiled where there are 2 or more cores and a C++ compiler, else ``inprocess``;
- ``inprocess``: one after the other, here;
- ``process``: a local process pool of ``workers`` processes (``--workers K``);
- ``dask``: a Dask distributed cluster (``--scheduler ADDRESS``; without one, a LocalCluster of
  ``workers`` processes);
- ``slurm``: Slurm through submitit (partition, GPUs, time, CPUs per task); ``slurm_cluster =
  "local"`` runs the same jobs as local subprocesses (what the tests use).

A case that raises fails alone: its reason goes to its ``failed.json``, the task goes on with the
others, and a task that dies as a whole (a killed worker) marks its unfinished cases failed.
Each member's arithmetic does not depend on which task or worker runs it (members are computed
one at a time on the CPU), and every task sets the same number of torch threads, so results
equal a serial run's (tested).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..core.errors import FpbenchError

EXECUTORS = ("auto", "inprocess", "process", "dask", "slurm")


@dataclass
class Task:
    """Cases run together by one worker (picklable: cases, paths and names only)."""

    cases: list
    results: str
    device: str | None = None
    threads: int | None = None
    ensemble: bool = True
    compile: bool = False  # the ensembles' loss terms through torch.compile
    deadline: float | None = None  # time.time() after which no training iteration or case starts
    progress: bool = False  # bars on a terminal for training steps and sampling chunks
    debug: bool = False  # re-raise what would be handled (a broken ensemble's fallback), with its traceback
    queued: bool = False  # another task of the run comes first: past the deadline this one starts nothing (``late``)


@dataclass
class Outcome:
    key: str
    label: str
    status: str  # "done", "failed", "stopped" (the time budget ended; a rerun resumes it), "busy" (another
    # process holds the case's lock and is running it; a rerun collects it)
    error: str = ""


@dataclass
class SlurmOptions:
    partition: str | None = None
    gpus: int = 0
    time_min: int = 60
    cpus: int = 2
    cluster: str = "slurm"  # "local": submitit's local executor (tests)
    extra: dict = field(default_factory=dict)


def plan(cases: list, results, device=None, threads: int | None = None, workers: int = 1,
         ensemble: bool = True, compile: bool | None = None, deadline: float | None = None,
         progress: bool = False, debug: bool = False) -> list[Task]:
    """Tasks for the cases: ensemble groups split into at most ``workers`` parts, other cases alone.
    ``compile`` unset: ``default_compile``; ``threads`` unset: ``DEFAULT_THREADS``: the same for every
    command, so that a case trains by the same arithmetic (and to the same weights) whichever runs it."""
    from .pipeline import ensemble_key

    compile = default_compile(device) if compile is None else compile
    threads = DEFAULT_THREADS if threads is None else threads

    groups: dict[str, list] = {}
    singles = []
    for case in cases:
        key = ensemble_key(case)
        if key is not None and not ensemble:  # each alone, but by the same arithmetic: an ensemble of one
            key = f"{key}/{case.key}"
        (groups.setdefault(key, []) if key else singles).append(case)
    tasks = []
    for members in groups.values():
        tasks += [Task(part, str(results), device, threads, True, compile, deadline, progress, debug)
                  for part in split_balanced(members, workers)]
    tasks += [Task([c], str(results), device, threads, True, deadline=deadline, progress=progress, debug=debug)
              for c in singles]
    return [replace(task, queued=i > 0) for i, task in enumerate(tasks)]


def training_cost(case) -> int:
    """Rows through the network per training iteration, a proxy for its time: the DSM batch, plus
    (d + 3) jet rows (value, d_t, grad, Laplacian) per residual point of each residual term the
    case's method weights (measured: a log-FP member costs about 1.3x a DSM-only one at quick)."""
    from ..train.methods import make_method

    cfg = case.config
    method = make_method(cfg["method"]["name"], **cfg["method"]["params"])
    dim = cfg["target"].get("params", {}).get("dim", 2)
    residual = sum(w != 0 for k, w in method.weights.items() if k != "dsm")
    return cfg["train"]["dsm_batch"] + residual * cfg["train"]["residual_points"] * (dim + 3)


def split_balanced(members: list, parts: int) -> list[list]:
    """``members`` dealt into at most ``parts`` lists of about equal ``training_cost`` (largest first,
    each to the lightest list), each in its original order."""
    parts = max(1, min(parts, len(members)))
    costs = [training_cost(m) for m in members]
    loads, chosen = [0] * parts, [[] for _ in range(parts)]
    for i in sorted(range(len(members)), key=lambda i: -costs[i]):
        k = loads.index(min(loads))
        loads[k] += costs[i]
        chosen[k].append(i)
    return [[members[i] for i in sorted(part)] for part in chosen]


def claim_cases(task: Task, store) -> tuple[list, list, list[Outcome]]:
    """(the cases this process may run, the locks it now holds, "busy" outcomes for the cases whose lock
    another process holds). Finished cases need no lock: they are only read."""
    mine, locks, busy = [], [], []
    for case in task.cases:
        if store.is_done(case.key):
            mine.append(case)
            continue
        if (lock := try_claim(store, case.key)) is None:
            busy.append(Outcome(case.key, case.label, "busy", BUSY))
            continue
        mine.append(case)
        locks.append(lock)
    return mine, locks, busy


BUSY = "another fpbench process is running it"


def try_claim(store, key: str):
    """The case's lock, now held by this process (``store.held`` says so until ``release``); None when
    another process holds it."""
    from filelock import Timeout

    lock = store.case_lock(key)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    store.held.add(key)
    return lock


def release(store, key: str, lock) -> None:
    """Give back a lock ``try_claim`` took."""
    lock.release()
    store.held.discard(key)


def failed_outcome(store, case, err: BaseException, log=print) -> Outcome:
    """Store ``case``'s failure (a rerun retries it) and return its outcome; the other cases go on."""
    store.mark_failed(case.key, case.label, err)
    log(f"failed {case.label} [{case.key}]: {type(err).__name__}: {err}")
    return Outcome(case.key, case.label, "failed", f"{type(err).__name__}: {err}")


def run_task(task: Task, log=print) -> list[Outcome]:
    """Run the task's cases whose locks this process gets (``claim_cases``); the others are "busy"."""
    from .store import Store

    store = Store(Path(task.results))
    mine, locks, busy = claim_cases(task, store)
    for outcome in busy:
        log(f"busy   {outcome.label} [{outcome.key}]: {outcome.error}")
    try:
        return _run_claimed(replace(task, cases=mine), log) + busy
    finally:
        for lock in locks:
            lock.release()
        store.held.clear()


def late(task: Task) -> bool:
    """Whether ``task`` begins past the deadline after another task of its run: it then starts nothing (no
    ensemble of it is built, warm-started or checkpointed at step 0; the same command starts it later). The run's
    first task always starts, so that a run stopped at once still leaves its first ensemble's checkpoint."""
    return task.queued and task.deadline is not None and time.time() >= task.deadline


def _run_claimed(task: Task, log=print) -> list[Outcome]:
    """Train the task's ensemble, then run each case (finished ones are skipped); never raises for a case."""
    import torch

    from ..train.loop import Deadline, TimeBudgetReached
    from .pipeline import run_case, train_groups
    from .store import Store

    if task.threads:
        torch.set_num_threads(task.threads)
    store = Store(Path(task.results))
    device = None if task.device in (None, "cpu") else torch.device(task.device)
    if device is not None and device.type == "cuda":
        # float32 throughout; TF32 would round the residuals' matmul inputs to 10 mantissa bits
        torch.backends.cuda.matmul.allow_tf32 = False
    failed: dict[str, str] = {}
    deadline = Deadline(task.deadline) if task.deadline is not None else None
    stopped = [Outcome(c.key, c.label, "stopped") for c in task.cases]
    if late(task):
        return [Outcome(c.key, c.label, "done") if store.is_done(c.key) else s for c, s in zip(task.cases, stopped)]
    if task.ensemble:
        try:
            failed.update(train_groups(task.cases, store, device, log=log, compile=task.compile, deadline=deadline,
                                       progress=task.progress))
        except TimeBudgetReached as err:
            log(str(err))
            return stopped
        except Exception as err:  # the ensemble as a whole broke: its cases train one by one below
            if task.debug:
                raise
            log(f"ensemble training failed ({type(err).__name__}: {err}); training its cases one by one "
                "(--debug stops here with the traceback)")
    outcomes = []
    for i, case in enumerate(task.cases):
        if case.key in failed:
            outcomes.append(Outcome(case.key, case.label, "failed", failed[case.key]))
            continue
        if deadline is not None and deadline.reached() and not store.is_done(case.key):
            return outcomes + stopped[i:]
        try:
            run_case(case, store, device, progress=task.progress, log=log, deadline=deadline)
            outcomes.append(Outcome(case.key, case.label, "done"))
        except TimeBudgetReached as err:
            log(str(err))
            return outcomes + stopped[i:]
        except Exception as err:  # one case fails alone
            outcomes.append(failed_outcome(store, case, err, log))
    return outcomes


class InProcess:
    """The default executor: runs each task when submitted, here."""

    class _Done:
        def __init__(self, value=None, error=None):
            self.value, self.error = value, error

        def result(self):
            if self.error is not None:
                raise self.error
            return self.value

    def submit(self, fn, *args):
        try:
            return self._Done(fn(*args))
        except Exception as err:
            return self._Done(error=err)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Dask:
    def __init__(self, scheduler: str | None, workers: int):
        from distributed import Client, LocalCluster

        self.cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1,
                                                           processes=True, dashboard_address=None)
        self.client = Client(scheduler or self.cluster)

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        return False


class _Submitit:
    def __init__(self, folder: Path, options: SlurmOptions):
        import submitit

        self.executor = submitit.AutoExecutor(folder=str(folder), cluster=options.cluster)
        params = {"timeout_min": options.time_min, "cpus_per_task": options.cpus}
        if options.cluster != "local":
            params["gpus_per_node"] = options.gpus
            if options.partition:
                params["slurm_partition"] = options.partition
        params.update(options.extra)
        self.executor.update_parameters(**params)

    def submit(self, fn, *args):
        return self.executor.submit(fn, *args)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def make_executor(kind: str = "inprocess", workers: int = 1, scheduler: str | None = None,
                  slurm: SlurmOptions | None = None, folder: Path | None = None):
    """A context manager with ``submit(fn, *args) -> handle`` and ``handle.result()``."""
    if kind == "auto":
        how = fast_settings(kind, workers)
        kind, workers = how.executor, how.workers
    if kind == "inprocess":
        return InProcess()
    if kind == "process":
        return process_pool(workers)
    if kind == "dask":
        return _Dask(scheduler, workers)
    if kind == "slurm":
        return _Submitit(Path(folder or "slurm-jobs"), slurm or SlurmOptions())
    raise FpbenchError(f"unknown executor {kind!r}; known: {', '.join(EXECUTORS)}")


def process_pool(workers: int):
    """A pool of ``workers`` spawned processes that Ctrl-C stops at once: its workers ignore SIGINT (the
    terminal sends it to them too; a worker's KeyboardInterrupt would be returned as that task's result and
    the worker would go on to the next task), and an interrupt in the parent cancels the queued tasks and
    terminates the workers instead of waiting for them. Finished cases are stored; a case in progress keeps
    its last training checkpoint, and a rerun resumes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    class Pool(ProcessPoolExecutor):
        def __exit__(self, exc_type, exc, tb):
            if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
                processes, manager = list((self._processes or {}).values()), self._executor_manager_thread
                self.shutdown(wait=False, cancel_futures=True)
                for process in processes:
                    process.terminate()
                if manager is not None:  # it sees its workers gone and reaps them (not two threads at once)
                    manager.join()
                for process in processes:
                    process.join()
                return False
            return super().__exit__(exc_type, exc, tb)

    return Pool(max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_pool_worker_signals)


def _pool_worker_signals() -> None:
    """A pool worker ignores SIGINT (its parent decides) and, on SIGTERM (its parent's stop), runs
    multiprocessing's exit-time clean-up before it exits at once: what it created (e.g. torch.compile's
    semaphores) is released rather than reported as leaked. (An exception would not do: the pool's worker
    loop catches it as the task's result and goes on to the next task.)"""
    import os
    import signal
    from multiprocessing import util

    def stop(*_):
        util._exit_function()
        os._exit(128 + signal.SIGTERM)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def compiler_found() -> bool:
    """Whether torch.compile can build CPU kernels here: a C++ compiler on the PATH ($CXX, g++ or c++)."""
    import shutil

    return any(shutil.which(c) for c in (os.environ.get("CXX"), "g++", "c++") if c)


def default_compile(device=None) -> bool:
    """Whether the ensembles' loss terms go through torch.compile when no one says: on the CPU where a C++
    compiler is found. Compiled and eager terms round differently (the weights differ in their last bits),
    so every command takes this one default, and each case records which it trained by (``train.json``)."""
    return device in (None, "cpu") and compiler_found()


@dataclass(frozen=True)
class ExecutionSettings:
    executor: str
    workers: int
    compile: bool

    def describe(self) -> str:
        return f"executor {self.executor}, workers {self.workers}, {'compiled' if self.compile else 'eager'} loss terms"


def fast_settings(executor: str | None = None, workers: int | None = None, compile: bool | None = None,
                  device: str | None = None) -> ExecutionSettings:
    """The given settings, and for what is left unset the fastest ones in reports/performance.md's training
    rows (``fpbench bench``): on the CPU a process pool with one single-thread worker per core when there
    are 2 or more, and the loss terms through torch.compile where a C++ compiler is found; on CUDA one
    process, eager (the batched GPU path)."""
    cpu, cores = device in (None, "cpu"), available_cores()
    if executor in (None, "auto"):
        executor = "process" if cpu and (workers or cores) >= 2 else "inprocess"
    workers = workers or (cores if executor in ("process", "dask") else 1)
    if compile is None:
        compile = default_compile(device)
    return ExecutionSettings(executor, workers, compile)


DEFAULT_THREADS = 1  # torch threads per task: the process pool gives the parallelism (one worker per core), and
# a fixed count keeps a case's numbers its own (compiled loss terms reduce in an order that follows it)


def run_tasks(tasks: list[Task], executor, log=print) -> list[Outcome]:
    """Submit every task, then collect; a task that dies as a whole marks its unfinished cases failed. In
    process, the tasks log through ``log`` too (elsewhere they print: a function does not travel)."""
    from .store import Store

    extra = (log,) if isinstance(executor, InProcess) else ()
    handles = [(task, executor.submit(run_task, task, *extra)) for task in tasks]
    outcomes = []
    for task, handle in handles:
        try:
            outcomes += handle.result()
        except Exception as err:  # the worker itself died or could not run the task
            if task.debug:
                raise
            store = Store(Path(task.results))
            for case in task.cases:
                if not store.is_done(case.key):
                    store.mark_failed(case.key, case.label, err)
                    outcomes.append(Outcome(case.key, case.label, "failed", f"{type(err).__name__}: {err}"))
                else:
                    outcomes.append(Outcome(case.key, case.label, "done"))
            log(f"a task of {len(task.cases)} case(s) failed as a whole: {err}")
    return outcomes


def run_suite(suite: str, scale: str, results: str | None = None, seeds: int | None = None, device=None,
              log=print) -> tuple:
    """Run the cases of ``suite`` at ``scale`` that the store at ``results`` lacks (in this process,
    same-shape cases as ensembles; a rerun resumes), then return (``results.collect``'s frame, the
    records) of all its cases."""
    from .results import collect
    from .store import Store, results_root
    from .suite import expand, load_suite

    store = Store(results_root(results))
    cases = expand(load_suite(suite), scale, seeds)
    run_tasks(plan(cases, store.root, None if device is None else str(device)), InProcess(), log=log)
    df, records, _missing = collect(store, cases)
    return df, records


def evaluate_model(model: str, target: str, scale: str, suite: str = "paper", seeds: int = 1,
                   results: str | None = None, device=None, log=print) -> list[tuple[dict, dict]]:
    """A model trained elsewhere (``model``: ``module:factory``, ``file.py:factory`` or a TorchScript file;
    the protocol of ``fpbench.run.external``) measured with every metric fpbench computes, under the
    settings of ``suite``'s w_R = 0 baseline for ``target`` at ``scale``. Runs the baselines the store
    lacks first; returns (the baseline's record, the model's record) per seed 0 .. ``seeds`` - 1."""
    from .external import baseline_case, check_external, external_case
    from .pipeline import run_external
    from .store import Store, results_root

    store = Store(results_root(results)).check_writable()
    device = resolve_device(device) if isinstance(device, str) or device is None else device
    bases = [baseline_case(suite, scale, target, seed) for seed in range(seeds)]
    check_external(model, bases[0])  # the user's model, before the baseline trains for minutes
    run_tasks(plan(bases, store.root, None if device is None else str(device)), InProcess(), log=log)
    missing = [c.label for c in bases if not store.is_done(c.key)]
    if missing:
        raise FpbenchError(f"the baseline did not finish: {', '.join(missing)} (its failed.json says why)")
    return [(store.metrics(c.key), run_external(external_case(model, suite, scale, target, c.config["seed"]),
                                                store, device, log=log)) for c in bases]


class DeviceError(FpbenchError):
    """A device that this machine does not have."""


def resolve_device(name: str | None):
    """None for the CPU, else the torch device ``name``; a clear DeviceError where it is absent."""
    import torch

    if name in (None, "cpu"):
        return None
    if name not in ("cuda",) and not name.startswith("cuda:"):
        raise DeviceError(f"unknown device {name!r}; known: cpu, cuda")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {name}: no CUDA device is available here")
    return torch.device(name)
