"""``fpbench run --max-minutes``: training stops at a deadline with its checkpoint written, and a later
run resumes it to the numbers of an uninterrupted run (paper scale in chunks on a lent GPU)."""

from dataclasses import dataclass, field

import pytest
import torch

from fpbench.cli import main
from fpbench.core.models import PotentialMLP
from fpbench.core.sde import make_sde
from fpbench.core.targets import make_target
from fpbench.run.store import read_json
from fpbench.run.suite import expand, load_suite
from fpbench.train.ensemble import train_ensemble
from fpbench.train.loop import Deadline, TimeBudgetReached, train
from fpbench.train.methods import make_method

from .test_pipeline import GOOD, TRAIN_CFG, _write_suite


@dataclass(frozen=True)
class AfterChecks(Deadline):
    """A deadline reached at the ``limit``-th check: stops training at a chosen iteration."""

    limit: int = 0
    calls: list = field(default_factory=list)

    def reached(self) -> bool:
        self.calls.append(1)
        return len(self.calls) > self.limit


def _models(n=2):
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(PotentialMLP(width=16, depth=2))
    return out


def _ensemble(models, checkpoint=None, deadline=None):
    sde, targets = make_sde("ou"), [make_target("blob"), make_target("checker")]
    methods = [make_method("fp", w_r=0.0), make_method("fp", w_r=1.0)]
    return train_ensemble(models, methods, targets, sde, TRAIN_CFG, [0, 1], checkpoint=checkpoint, deadline=deadline)


def test_an_ensemble_stopped_at_the_deadline_resumes_bit_identically(tmp_path):
    reference = _models()
    _ensemble(reference)
    stopped, ckpt = _models(), tmp_path / "ensemble.pt"
    with pytest.raises(TimeBudgetReached, match="before iteration 7"):
        _ensemble(stopped, ckpt, AfterChecks(0.0, limit=7))
    stop = torch.load(ckpt, weights_only=True)
    assert stop["iteration"] == 7 and stop["seconds"] > 0  # written at the stop, between checkpoints
    resumed = _models()
    results = _ensemble(resumed, ckpt)
    assert results[0].seconds * len(resumed) > stop["seconds"]  # the time before the stop still counts
    for a, b in zip(reference, resumed):
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.equal(p, q)
    assert [h["iteration"] for h in results[0].history] == list(range(12))


def test_one_model_stopped_at_the_deadline_resumes_bit_identically(tmp_path):
    def run(checkpoint=None, deadline=None):
        torch.manual_seed(0)
        model = PotentialMLP(width=16, depth=2)
        result = train(model, make_method("fp", w_r=1.0), make_target("blob"), make_sde("ou"), TRAIN_CFG, 0,
                       checkpoint=checkpoint, deadline=deadline)
        return model, result

    reference, ckpt = run()[0], tmp_path / "model.pt"
    with pytest.raises(TimeBudgetReached):
        run(ckpt, AfterChecks(0.0, limit=5))
    before = torch.load(ckpt, weights_only=True)["seconds"]
    resumed, result = run(ckpt)
    assert all(torch.equal(p, q) for p, q in zip(reference.parameters(), resumed.parameters()))
    assert 0 < before < result.seconds  # the time before the stop still counts


def test_the_cli_stops_with_status_4_and_the_same_command_resumes(tmp_path, capsys):
    suite = _write_suite(tmp_path, GOOD)
    results = tmp_path / "r"
    assert main(["run", suite, "--scale", "smoke", "--results", str(results), "--max-minutes", "0", "--quiet"]) == 4
    assert "stopped at the time budget" in capsys.readouterr().err
    assert not list(results.glob("*/metrics.json")) and list(results.glob("ensembles/*.pt"))
    assert main(["run", suite, "--scale", "smoke", "--results", str(results), "--max-minutes", "30", "--quiet"]) == 0
    assert len(list(results.glob("*/metrics.json"))) == 2
    assert all(read_json(p)["metrics"]["convergence"]["times"] for p in results.glob("*/metrics.json"))


@pytest.mark.parametrize("ensemble", [True, False])
def test_a_damaged_checkpoint_is_moved_aside_and_the_case_retrains_to_the_same_numbers(tmp_path, ensemble):
    suite = _write_suite(tmp_path, GOOD)
    extra = [] if ensemble else ["--no-ensemble"]
    clean, damaged = tmp_path / "clean", tmp_path / "damaged"
    assert main(["run", suite, "--scale", "smoke", "--results", str(clean), "--quiet", *extra]) == 0
    # stopped before its first step: the ensemble's checkpoint is written (under --no-ensemble each case is an
    # ensemble of one, with a checkpoint of its own)
    assert main(["run", suite, "--scale", "smoke", "--results", str(damaged), "--max-minutes", "0", "--quiet",
                 *extra]) == 4
    ckpt = sorted(damaged.glob("ensembles/*.pt"))[0]
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # cut short, as a full disk would leave it
    with pytest.warns(UserWarning, match="is unreadable .* moved to .*corrupt, training starts again"):
        assert main(["run", suite, "--scale", "smoke", "--results", str(damaged), "--quiet", *extra]) == 0
    assert ckpt.with_name(ckpt.name + ".corrupt").exists()
    metrics = lambda root: {p.parent.name: read_json(p)["metrics"] for p in root.glob("*/metrics.json")}  # noqa: E731
    assert metrics(damaged) == metrics(clean) and len(metrics(clean)) == 2  # bit-identical, as never interrupted


def test_a_task_whose_turn_comes_after_the_runs_deadline_starts_nothing(tmp_path):
    """A run with a time budget: an ensemble whose turn comes after another's and after the budget ended is
    neither built nor checkpointed at step 0 (the same command starts it later); the run's first ensemble always
    starts, so a run stopped at once (--max-minutes 0) still leaves its checkpoint."""
    import time
    from dataclasses import replace

    from fpbench.run.execute import late, plan, run_task

    suite = load_suite(_write_suite(tmp_path, GOOD))
    cases = expand(suite, "smoke") + expand(suite, "smoke", seeds=2)[-1:]  # a second task: a case of seed 1 alone
    tasks = plan(cases, tmp_path / "unused", deadline=time.time() + 600, ensemble=False)
    assert [t.queued for t in tasks] == [False] + [True] * (len(tasks) - 1) and len(tasks) == 3
    [task] = plan(expand(suite, "smoke"), tmp_path / "r", deadline=time.time() - 1)
    results = tmp_path / "r"
    assert not late(task) and late(replace(task, queued=True))
    assert {o.status for o in run_task(replace(task, queued=True), log=lambda *_: None)} == {"stopped"}
    assert not list(results.glob("ensembles/*"))
    assert {o.status for o in run_task(task, log=lambda *_: None)} == {"stopped"}
    assert list(results.glob("ensembles/*.pt"))
