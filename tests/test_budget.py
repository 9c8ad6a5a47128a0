"""The budget study end to end on a tiny schedule: records, the gate on every member, the report,
and a schedule interrupted part-way that resumes to the uninterrupted record."""

import json
from pathlib import Path

import pytest

from fpbench.core import convergence
from fpbench.core.errors import FpbenchError
from fpbench.reports import budget_report
from fpbench.run import budget
from fpbench.run.schema import BUDGET_RECORD_KEYS, budget_record_problem


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(budget.SCHEDULES, "tiny", {"iterations": 4, "lr_stages": budget.QUICK_STAGES,
                                                   "dsm_batch": 64, "residual_points": 32})
    monkeypatch.setattr(budget, "PROBE_EVERY", 2)
    monkeypatch.setattr(budget, "PROBE_POINTS", 50)
    monkeypatch.setattr(budget, "SAMPLE", {"n": 200, "nfe": 10})
    monkeypatch.setattr(convergence, "GATE_POINTS", 200)  # the final evidence, for time


def test_a_tiny_study_records_trajectories_reports_the_gate_and_resumes_after_a_kill(tmp_path, monkeypatch, tiny):
    record = budget.run_schedule("tiny", str(tmp_path / "whole"), compile=False)
    assert len(record["members"]) == 12 and record["member_steps_per_second"] > 0
    for label, points in record["trajectories"].items():
        assert [p["iteration"] for p in points] == [2, 4], label
        assert 0 < points[-1]["rel_error"] and len(points[-1]["ratio"]) == 7
    assert json.loads((tmp_path / "whole" / "tiny.json").read_text())["name"] == "tiny"
    assert budget_record_problem(record) is None  # the record is what the schema declares
    again = budget.run_schedule("tiny", str(tmp_path / "whole"), compile=False)  # finished: read back, not rerun
    assert again["train_seconds"] == record["train_seconds"]

    out = budget_report.write_budget_report(tmp_path / "whole", tmp_path / "budget.md", "fpbench budget report")
    text = out.read_text()
    assert "No schedule tried so far trains all 12 models past the gate" in text  # 4 steps learn nothing
    assert text.count("FAIL: score ratio") == 12 and "0 of 12" in text
    assert f"fpbench budget run --schedules tiny --threads 1 --dir {tmp_path / 'whole'}" in text  # what made it
    assert "no record in this study: quick-4k, steps-12k" in text  # the schedules not measured are named
    assert (tmp_path / "figures" / "budget-trajectories.png").stat().st_size > 0

    calls, profile = [], convergence.score_profile

    def killed_in_the_second_probe(*args):
        calls.append(1)
        if len(calls) > 14:  # 12 members per probe: the second probe dies part-way through
            raise KeyboardInterrupt
        return profile(*args)

    monkeypatch.setattr(convergence, "score_profile", killed_in_the_second_probe)
    with pytest.raises(KeyboardInterrupt):
        budget.run_schedule("tiny", str(tmp_path / "cut"), compile=False)
    assert (tmp_path / "cut" / "tiny.ckpt").exists() and not (tmp_path / "cut" / "tiny.json").exists()
    unfinished = budget_report.load_in_progress(tmp_path / "cut")  # the report shows how far it got
    assert len(unfinished) == 1
    text = "\n".join(budget_report.in_progress_section(unfinished, tmp_path / "cut"))
    assert "tiny (in progress: step 2 of 4" in text and text.count("| FAIL ") == 12
    assert f"`fpbench budget run --schedules tiny --threads 1 --dir {tmp_path / 'cut'}` resumes it" in text
    monkeypatch.setattr(convergence, "score_profile", profile)
    resumed = budget.run_schedule("tiny", str(tmp_path / "cut"), compile=False)
    assert resumed["trajectories"] == record["trajectories"] and resumed["members"] == record["members"]
    assert not (tmp_path / "cut" / "tiny.ckpt").exists()


def test_a_schedule_branches_from_another_that_shares_its_prefix_and_lands_where_a_whole_run_lands(
        tmp_path, monkeypatch, tiny):
    monkeypatch.setattr(budget, "PROBE_EVERY", 1)
    base = {"dsm_batch": 64, "residual_points": 32}
    monkeypatch.setitem(budget.SCHEDULES, "tiny-a", {**base, "iterations": 4, "lr_stages": [[1e-3, 0.5], [1e-4, 0.5]]})
    monkeypatch.setitem(budget.SCHEDULES, "tiny-b", {**base, "iterations": 6,
                                                     "lr_stages": [[1e-3, 1 / 3], [1e-5, 2 / 3]]})
    monkeypatch.setitem(budget.SCHEDULES, "tiny-c", {**base, "dsm_batch": 32, "iterations": 4,
                                                     "lr_stages": [[1e-3, 0.5], [1e-4, 0.5]]})
    shared = tmp_path / "shared"
    budget.run_schedule("tiny-a", str(shared), compile=False)
    # a's kept checkpoints are at steps 1, 2, 3; b has a's learning rate before step 2 only
    assert budget.branch_point("tiny-b", shared) == ("tiny-a", 2)
    # 1 is superseded by 2 (it serves no schedule that 2 does not); 3 is kept for the fixture's "tiny"
    # (a's learning rates for its first 3 steps), not for b. The repository keeps these.
    assert sorted(p.name for p in (shared / "tiny-a.kept").iterdir()) == ["2.ckpt", "3.ckpt"]
    assert budget.serves("tiny-a", 3) == {"tiny"} and budget.serves("tiny-a", 2) == {"tiny", "tiny-b"}
    assert budget.branch_point("tiny-c", shared) is None  # another DSM batch: nothing shared
    branched = budget.run_schedule("tiny-b", str(shared), compile=False)
    assert "tiny-b branched from tiny-a at step 2" in (shared / "tiny-b.log").read_text()
    whole = budget.run_schedule("tiny-b", str(tmp_path / "alone"), compile=False)
    assert branched["trajectories"] == whole["trajectories"] and branched["members"] == whole["members"]
    assert branched["branched_from"] == {"schedule": "tiny-a", "step": 2} and whole["branched_from"] is None
    shared_with = budget_report.summary_frame([branched, whole])["first steps shared with"].tolist()
    assert shared_with == ["tiny-a (steps 1-2)", "—"]


def test_the_frontier_schedules_share_their_prefixes_and_keep_only_the_checkpoints_they_branch_from():
    assert budget.serves("short-lr-48k", 43_000) >= {"short-lr-72k", "short-lr-96k"}
    assert budget.serves("short-lr-48k", 44_000) == set()  # 48k is at lr 1e-5 from step 43,200
    assert budget.serves("short-lr-72k", 64_000) == {"short-lr-96k"}
    assert budget.serves("short-lr-72k", 65_000) == set()
    assert "short-lr-48k" not in budget.serves("steps-48k", 13_000)  # 1e-3 against 1e-4 at step 12,000


def test_a_spent_time_budget_stops_a_schedule_before_it_starts_or_branches(tmp_path, tiny):
    from fpbench.train.loop import TimeBudgetReached

    with pytest.raises(TimeBudgetReached):
        budget.run_schedule("tiny", str(tmp_path), compile=False, deadline=1.0)
    assert not list(tmp_path.glob("tiny*"))


def _planted_record(name: str, stages, errors: dict) -> dict:
    members = {f"{t}/fp(w_r={w})/seed0": {"target": t, "w_r": w, "ratio_min_late": 0.99, "ratio_max_late": 1.0,
                                          "rel_error": e, "loss_plateau": 0.01, "inside_grid_ode": 1.0,
                                          "inside_grid_sde": 1.0, "inside_grid_p0": 1.0}
               for (t, w), e in errors.items()}
    return {"name": name, "schedule": {"iterations": 100, "lr_stages": stages, "dsm_batch": 8, "residual_points": 4},
            "members": members}


def test_the_levers_section_compares_schedules_that_differ_only_in_their_learning_rates():
    from fpbench.reports.budget_report import levers_section

    cells = [("blob", 0.0), ("blob", 1.0), ("checker", 0.0), ("checker", 10.0)]
    a = _planted_record("a", [[1e-3, 1.0]], dict.fromkeys(cells, 0.1))
    b = _planted_record("b", [[1e-4, 1.0]], {c: 0.1 * f for c, f in zip(cells, (0.5, 2.0, 0.8, 4.0))})
    text = "\n".join(levers_section([a, b]))
    assert "b has the lower relative score error for 2 of 4 models (2 of 2 DSM baselines, 0 of 2 at w_R > 0)" in text
    assert "median ratio 1.4 (baselines 0.65, w_R > 0 3)" in text
    other = _planted_record("c", [[1e-4, 1.0]], dict.fromkeys(cells, 0.1))
    other["schedule"]["dsm_batch"] = 16  # a batch lever is not a learning-rate lever at equal cost
    assert levers_section([a, other]) == []


def _summary(*rows):
    """A summary frame as ``summary_frame`` makes it: (schedule, steps, training s, quality count, R~ recorded)."""
    import pandas as pd

    return pd.DataFrame([{"schedule": n, "steps": s, "training s": t, "member-steps/s": 1.0, "models": 12,
                          "passing": 12, "quality": q, "residual recorded": r} for n, s, t, q, r in rows])


def test_the_quality_conclusion_names_the_cheapest_schedule_reaching_it_or_the_most_any_reaches():
    from fpbench.reports.budget_report import quality_conclusion

    old = ("old", 48_000, 100, 12, False)  # R~ not measured: not counted
    text = quality_conclusion(_summary(old, ("a", 72_000, 300, 12, True), ("b", 96_000, 400, 12, True)))
    assert text.startswith("The cheapest schedule tried that puts all 12 into the authors' quality is **a**")
    text = quality_conclusion(_summary(old, ("a", 72_000, 300, 0, True), ("b", 96_000, 400, 1, True)))
    assert text.startswith("**No schedule tried puts all 12 models into the authors' quality**")
    assert "the most is 1 of 12 (b, 96,000 steps)" in text
    assert quality_conclusion(_summary(old)).startswith("No schedule's record has R̃")


def test_the_summary_table_writes_the_counts_and_says_where_the_quality_count_lacks_r_tilde():
    from fpbench.reports.budget_report import summary_table

    table = summary_table(_summary(("old", 48_000, 100, 7, False), ("a", 72_000, 300, 1, True)))
    assert table["models passing the gate"].tolist() == ["12 of 12", "12 of 12"]
    assert table["authors' quality"].tolist() == ["7 of 12 (score error only: R̃ not in this record)", "1 of 12"]
    assert not {"models", "passing", "quality", "residual recorded"} & set(table.columns)


def test_the_committed_budget_records_are_what_the_schema_declares():
    records = budget_report.load_records(Path("reports/budget-records"))
    assert len(records) >= 5 and all(budget_record_problem(r) is None for r in records)


def test_a_damaged_or_malformed_budget_record_is_an_error_naming_its_file(tmp_path, tiny):
    path = tmp_path / "tiny.json"
    path.write_text('{"name": "tiny", "sched')  # cut off mid-write
    with pytest.raises(FpbenchError, match=f"corrupt result file {path}"):
        budget_report.load_records(tmp_path)
    path.write_text(json.dumps({"name": "tiny", "schedule": {}, "members": {}}))
    with pytest.raises(FpbenchError, match=r"budget record .*tiny.json lacks \['branched_from'"):
        budget_report.load_records(tmp_path)
    whole = dict.fromkeys(BUDGET_RECORD_KEYS)
    path.write_text(json.dumps({**whole, "members": {"blob/fp(w_r=0.0)/seed0": {"target": "blob"}}}))
    with pytest.raises(FpbenchError, match=r"member 'blob/fp\(w_r=0.0\)/seed0' without \['w_r'"):
        budget_report.load_records(tmp_path)
