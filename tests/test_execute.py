"""Executors: in-process, a process pool, Dask (LocalCluster) and Slurm through submitit's local
executor run the same grid into a store with metrics identical to a serial run; a case that
raises fails alone in each."""

from pathlib import Path

import pytest

from fpbench.run.execute import InProcess, SlurmOptions, make_executor, plan, run_tasks
from fpbench.run.execute import compiler_found as COMPILER_FOUND  # the real one (conftest patches the module's)
from fpbench.run.store import Store, read_json
from fpbench.run.suite import expand, load_suite

REPO = Path(__file__).resolve().parent.parent

SUITE = """
[suite]
name = "grid"
targets = ["blob", "checker"]
sde = "ou"
[[methods]]
name = "fp"
sweep = { w_r = [0.0, 1.0] }
[[methods]]
name = "tests.plugins.methods:FragileMethod"
sweep = { fail = [0, 1] }
[model]
kind = "potential"
width = 8
depth = 1
beta = 10.0
[scales.paper]
[scales.quick]
[scales.smoke]
seeds = 1
train = { iterations = 12, dsm_batch = 64, residual_points = 32, log_every = 4, checkpoint_every = 4 }
sample = { n = 400, nfe = 20, fine_steps = 10, chunk = 200 }
[scales.smoke.metrics]
n_boot = 2
floor_reps = 2
residual_points = 100
dsm_points = 200
curl_points = 20
disc_points = 10
oracle_n = 200
"""


@pytest.fixture
def cases(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # workers import the test plugin module
    path = tmp_path / "grid.toml"
    path.write_text(SUITE)
    return expand(load_suite(str(path)), "smoke")


def _run(cases, root, kind, workers=1, **kw):
    tasks = plan(cases, root, threads=1, workers=workers)
    with make_executor(kind, workers, folder=root / "jobs", **kw) as executor:
        outcomes = run_tasks(tasks, executor, log=lambda _m: None)
    metrics = {p.parent.name: read_json(p)["metrics"] for p in Path(root).glob("*/metrics.json")}
    return {o.label: o.status for o in outcomes}, metrics


def _check_like_serial(serial, other):
    status, metrics = other
    assert status == serial[0]
    assert metrics.keys() == serial[1].keys() and len(metrics) == 6
    for key in metrics:
        assert metrics[key] == serial[1][key], key  # bit-identical numbers


@pytest.fixture
def serial(cases, tmp_path):
    status, metrics = _run(cases, tmp_path / "serial", "inprocess")
    failed = {label for label, s in status.items() if s == "failed"}
    assert failed == {"blob/tests.plugins.methods:FragileMethod(fail=1)/seed0",
                      "checker/tests.plugins.methods:FragileMethod(fail=1)/seed0"}  # fails alone
    store = Store(tmp_path / "serial")
    assert all("the user's loss broke" in store.failure(c.key)["message"] for c in cases
               if c.label in failed)
    return status, metrics


def test_plan_splits_ensembles_among_workers_and_keeps_plugins_alone(cases, tmp_path):
    tasks = plan(cases, tmp_path, workers=2)
    ensembles = [t for t in tasks if len(t.cases) > 1]
    assert len(ensembles) == 2 and sorted(len(t.cases) for t in ensembles) == [2, 2]
    assert sum(len(t.cases) for t in tasks) == len(cases) == 8
    assert all("Fragile" in t.cases[0].label for t in tasks if len(t.cases) == 1)


def test_process_pool_matches_serial(cases, tmp_path, serial):
    _check_like_serial(serial, _run(cases, tmp_path / "pool", "process", workers=2))


def test_dask_local_cluster_matches_serial(cases, tmp_path, serial):
    pytest.importorskip("distributed")
    _check_like_serial(serial, _run(cases, tmp_path / "dask", "dask", workers=2))


def test_submitit_local_executor_matches_serial(cases, tmp_path, serial):
    pytest.importorskip("submitit")
    _check_like_serial(serial, _run(cases, tmp_path / "slurm", "slurm", slurm=SlurmOptions(cluster="local",
                                                                                         time_min=10)))


def test_a_task_that_dies_marks_its_unfinished_cases_failed(cases, tmp_path):
    class Broken(InProcess):
        def submit(self, fn, *args):
            return self._Done(error=RuntimeError("worker lost"))

    tasks = plan(cases[:2], tmp_path / "r", threads=1)
    outcomes = run_tasks(tasks, Broken(), log=lambda _m: None)
    assert {o.status for o in outcomes} == {"failed"} and all("worker lost" in o.error for o in outcomes)
    assert all(Store(tmp_path / "r").failure(c.key) for c in cases[:2])


def test_unknown_executor_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown executor 'mpi'; known: auto, inprocess, process, dask, slurm"):
        make_executor("mpi")


@pytest.mark.parametrize("cores, compiler, given, expected", [
    (2, True, {}, ("process", 2, True)),  # the fast path, unasked
    (16, True, {}, ("process", 16, True)),
    (1, True, {}, ("inprocess", 1, True)),  # one core: no pool to gain from
    (2, False, {}, ("process", 2, False)),  # no C++ compiler: eager
    (2, True, {"executor": "inprocess"}, ("inprocess", 1, True)),  # what the user gives is kept
    (2, True, {"workers": 3}, ("process", 3, True)),
    (2, True, {"compile": False}, ("process", 2, False)),
    (2, True, {"executor": "dask"}, ("dask", 2, True)),
    (8, True, {"device": "cuda"}, ("inprocess", 1, False)),  # CUDA: one process, the batched GPU path
])
def test_run_picks_the_fast_settings_by_core_count_and_compiler(monkeypatch, cores, compiler, given, expected):
    from fpbench.run import execute

    monkeypatch.setattr(execute, "available_cores", lambda: cores)
    monkeypatch.setattr(execute, "compiler_found", lambda: compiler)
    how = execute.fast_settings(**given)
    assert (how.executor, how.workers, how.compile) == expected


def test_a_compiler_is_found_only_where_one_is_on_the_path(monkeypatch, tmp_path):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder
    assert not COMPILER_FOUND()
    fake = tmp_path / "c++"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert COMPILER_FOUND()
    fake.unlink()
    monkeypatch.setenv("CXX", str(fake.with_name("clang++")))
    assert not COMPILER_FOUND()
    fake.with_name("clang++").write_text("#!/bin/sh\n")
    fake.with_name("clang++").chmod(0o755)
    assert COMPILER_FOUND()


def test_fpbench_run_without_flags_takes_the_pool_and_compiles_where_it_can(monkeypatch, tmp_path, capsys):
    """`fpbench run` with no execution flags on a 2-core machine with a compiler: 2 process workers,
    each ensemble split between them, loss terms compiled; the header line says so."""
    from fpbench.cli import build_parser
    from fpbench.run import execute

    monkeypatch.setattr(execute, "available_cores", lambda: 2)
    monkeypatch.setattr(execute, "compiler_found", lambda: True)
    seen = {}
    monkeypatch.setattr(execute, "run_tasks", lambda tasks, executor: seen.update(tasks=tasks, executor=executor) or [])
    args = build_parser().parse_args(["run", "smoke", "--scale", "smoke", "--results", str(tmp_path), "--quiet"])
    args.func(args)
    assert all(t.compile and t.threads == 1 for t in seen["tasks"] if t.ensemble)
    from concurrent.futures import ProcessPoolExecutor

    assert isinstance(seen["executor"], ProcessPoolExecutor) and seen["executor"]._max_workers == 2
    assert "executor process, workers 2, compiled loss terms" in capsys.readouterr().out


def test_split_balanced_deals_members_by_training_cost():
    from fpbench.run.execute import split_balanced, training_cost

    cases = expand(load_suite("paper"), "smoke", seeds=1)  # 3 DSM-only members and 9 with the log-FP term
    cfg = cases[0].config["train"]
    costs = {c.key: training_cost(c) for c in cases}
    assert sorted(set(costs.values())) == [cfg["dsm_batch"], cfg["dsm_batch"] + 5 * cfg["residual_points"]]
    parts = split_balanced(cases, 2)
    loads = [sum(costs[c.key] for c in part) for part in parts]
    assert sorted(c.key for part in parts for c in part) == sorted(costs)  # every member once
    assert max(loads) - min(loads) <= max(costs.values())  # no part heavier by more than one member
    order = {c.key: i for i, c in enumerate(cases)}
    assert all([order[c.key] for c in part] == sorted(order[c.key] for c in part) for part in parts)
    assert split_balanced(cases[:1], 4) == [cases[:1]]


def _sleep_and_return(i):
    import time

    time.sleep(60)
    return i


def test_an_interrupt_stops_the_process_pool_and_its_queued_tasks():
    """Ctrl-C in the parent cancels what is queued and terminates the workers (which ignore the terminal's
    SIGINT themselves), instead of waiting for every submitted task to finish."""
    from fpbench.run.execute import process_pool

    with pytest.raises(KeyboardInterrupt):
        with process_pool(2) as pool:
            futures = [pool.submit(_sleep_and_return, i) for i in range(6)]
            processes = list(pool._processes.values())
            raise KeyboardInterrupt
    assert processes and not any(p.is_alive() for p in processes)
    assert all(f.cancelled() for f in futures[3:])  # a pool hands workers + 1 tasks to its queue at once
    assert all(f.cancelled() or f.exception() is not None for f in futures)  # none ran to its end
