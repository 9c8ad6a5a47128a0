"""Result bundles (fpbench/run/bundle.py): written from a store, verified by checksums, opened into a store
that reports read without training, audited by retraining cases from scratch, and refused clearly when
damaged."""

import json
import shutil
from pathlib import Path

import pytest

from fpbench.cli import main
from fpbench.run import audit as au
from fpbench.run import bundle as bd
from fpbench.run.store import Store, read_json

from .test_pipeline import GOOD, _metrics_by_key, _write_suite


@pytest.fixture(scope="module")
def smoke_bundle(tmp_path_factory):
    """(suite file, its store, a bundle of its finished cases) of one GOOD run at smoke."""
    folder = tmp_path_factory.mktemp("bundle")
    suite = _write_suite(folder, GOOD)
    assert main(["run", suite, "--scale", "smoke", "--results", str(folder / "results"), "--quiet"]) == 0
    assert main(["bundle", "write", str(folder / "bundle"), "--suite", suite, "--scale", "smoke", "--results",
                 str(folder / "results")]) == 0
    return suite, folder / "results", folder / "bundle"


def test_a_bundle_holds_every_finished_case_with_its_checksums(smoke_bundle):
    _suite, store, bundle = smoke_bundle
    manifest = bd.verify_bundle(bundle)
    assert set(manifest["cases"]) == set(_metrics_by_key(store)) and len(manifest["cases"]) == 2
    for key in manifest["cases"]:
        for name in bd.CASE_FILES:
            assert manifest["files"][f"{key}/{name}"] == bd.sha256(store / key / name)
    assert any(rel.startswith("floors/") for rel in manifest["files"])
    assert manifest["format"] == bd.FORMAT and manifest["torch"] and manifest["fpbench"]
    assert not list(bundle.glob("*/checkpoint.pt")) and not list(bundle.glob("*/.lock"))
    assert all(read_json(bundle / key / "train.json")["platforms"] == [bd.platform_here()] for key in manifest["cases"])


def test_a_report_from_an_opened_bundle_trains_nothing_and_gives_the_stores_numbers(smoke_bundle, tmp_path,
                                                                                    monkeypatch):
    from fpbench.train import ensemble, loop

    suite, store, bundle = smoke_bundle

    def no_training(*args, **kwargs):
        raise AssertionError("a report from a bundle must not train")

    monkeypatch.setattr(loop, "train", no_training)
    monkeypatch.setattr(ensemble, "train_ensemble", no_training)
    opened = tmp_path / "opened"
    assert main(["bundle", "open", str(bundle), "--results", str(opened)]) == 0
    assert _metrics_by_key(opened) == _metrics_by_key(store)
    assert main(["run", suite, "--scale", "smoke", "--results", str(opened), "--quiet"]) == 0  # all done: skipped
    out = tmp_path / "report.md"
    assert main(["report", suite, "--scale", "smoke", "--results", str(opened), "--out", str(out),
                 "--calibration-reps", "10"]) == 0
    assert "from 2 finished case(s)" in out.read_text()


def test_report_with_a_bundle_opens_it_into_a_fresh_store_and_trains_nothing(smoke_bundle, tmp_path, monkeypatch):
    from fpbench.train import ensemble, loop

    suite, store, bundle = smoke_bundle
    monkeypatch.setattr(loop, "train", _no_training)
    monkeypatch.setattr(ensemble, "train_ensemble", _no_training)
    before = (bundle / bd.MANIFEST).read_bytes()
    out = tmp_path / "report.md"
    assert main(["report", suite, "--scale", "smoke", "--results", str(tmp_path / "fresh"), "--out", str(out),
                 "--calibration-reps", "10", "--bundle", str(bundle)]) == 0
    assert f"from 2 finished case(s) of 2 under `{bundle} (the bundle, opened into " in out.read_text()
    assert _metrics_by_key(tmp_path / "fresh") == _metrics_by_key(store)
    assert (bundle / bd.MANIFEST).read_bytes() == before  # only read
    assert main(["report", suite, "--scale", "smoke", "--results", str(tmp_path / "f2"), "--bundle",
                 str(tmp_path / "nowhere")]) == 2  # no bundle there: a one-line error


def test_compare_with_a_bundle_trains_only_the_new_method_and_leaves_the_bundle_alone(smoke_bundle, tmp_path):
    suite, _store, bundle = smoke_bundle
    results, baseline = tmp_path / "results", bd.read_manifest(bundle)["cases"]
    before = (bundle / bd.MANIFEST).read_bytes()
    assert main(["compare", "examples/ramped_fp.py:RampedFP", "--suite", suite, "--scale", "smoke", "--results",
                 str(results), "--out", str(tmp_path / "cmp.md"), "--quiet", "--bundle", str(bundle)]) == 0
    # the baseline's training records are the bundle's bytes: a retrained case records its own seconds
    for key in baseline:
        assert (results / key / "train.json").read_bytes() == (bundle / key / "train.json").read_bytes(), key
    trained = {p.parent.name for p in results.glob("*/model.pt")} - set(baseline)
    methods = {read_json(results / key / "config.json")["method"]["name"] for key in trained}
    assert trained and methods == {"examples/ramped_fp.py:RampedFP"}
    assert (bundle / bd.MANIFEST).read_bytes() == before and "RampedFP" in (tmp_path / "cmp.md").read_text()
    # tested against the suite's own baseline (DSM alone, w_R = 0), not against itself
    assert "Against **fp (potential) [w_r=0]**" in (tmp_path / "cmp.md").read_text()


def test_bundle_write_takes_a_method_of_your_own_only_when_named(smoke_bundle, tmp_path):
    suite, _store, bundle = smoke_bundle
    results = tmp_path / "results"
    assert main(["compare", "examples/ramped_fp.py:RampedFP", "--suite", suite, "--scale", "smoke", "--results",
                 str(results), "--out", str(tmp_path / "cmp.md"), "--quiet", "--bundle", str(bundle)]) == 0
    ramped = {p.parent.name for p in results.glob("*/config.json")
              if read_json(p)["method"]["name"] == "examples/ramped_fp.py:RampedFP"}
    assert ramped
    suite_only, with_method = tmp_path / "suite-only", tmp_path / "with-method"
    assert main(["bundle", "write", str(suite_only), "--suite", suite, "--scale", "smoke", "--results",
                 str(results)]) == 0
    assert main(["bundle", "write", str(with_method), "--suite", suite, "--scale", "smoke", "--results",
                 str(results), "--method", "examples/ramped_fp.py:RampedFP"]) == 0
    baseline = set(bd.read_manifest(bundle)["cases"])
    assert set(bd.verify_bundle(suite_only)["cases"]) == baseline
    assert set(bd.verify_bundle(with_method)["cases"]) == baseline | ramped


def _no_training(*args, **kwargs):
    raise AssertionError("a report from a bundle must not train")


def test_an_audit_retrains_cases_from_scratch_to_the_same_bytes(smoke_bundle, tmp_path, capsys):
    _suite, _store, bundle = smoke_bundle
    rows = au.audit(bundle, 2, tmp_path / "audit", log=lambda *_: None)
    assert len(rows) == 2 and all(r["verdict"] == "reproduced, bit-identical" for r in rows), rows
    assert all(r["reproduced"] and r["bit-identical"] for r in rows)
    assert all(r["weights identical"] and r["samples identical"] and r["metrics compared"] > 20 for r in rows)
    assert main(["audit", str(bundle), "--cases", "1"]) == 0
    assert "1 of 1 case(s) reproduced (1 bit-identically, 0 within tolerance" in capsys.readouterr().out


def test_an_audit_names_what_differs(smoke_bundle, tmp_path):
    """A bundle whose stored model is another one (here: the other case's weights, checksums rewritten to
    match): the audit says the weights differ, by how much."""
    _suite, _store, original = smoke_bundle
    bundle = Path(shutil.copytree(original, tmp_path / "swapped"))
    manifest = read_json(bundle / bd.MANIFEST)
    first, second = sorted(manifest["cases"])
    shutil.copyfile(bundle / second / "model.pt", bundle / first / "model.pt")
    manifest["files"][f"{first}/model.pt"] = bd.sha256(bundle / first / "model.pt")
    (bundle / bd.MANIFEST).write_text(json.dumps(manifest))
    rows = {r["key"]: r for r in au.audit(bundle, 2, tmp_path / "audit", log=lambda *_: None)}
    assert not rows[first]["weights identical"] and rows[first]["largest weight difference"] > 0
    assert rows[first]["verdict"].startswith("not reproduced: differs on the platform the case was trained on")
    assert rows[second]["verdict"] == "reproduced, bit-identical"
    assert (rows[first]["reproduced"], rows[first]["bit-identical"], rows[second]["reproduced"]) == (False, False, True)


def _rewritten(bundle: Path, rel: str, change) -> None:
    """``change(path)`` a bundle's file and give the manifest its new checksum (a tampering the checksums do
    not see, which the audit must)."""
    change(bundle / rel)
    manifest = read_json(bundle / bd.MANIFEST)
    manifest["files"][rel] = bd.sha256(bundle / rel)
    (bundle / bd.MANIFEST).write_text(json.dumps(manifest))


def test_a_quick_audit_retrains_a_prefix_and_re_evaluates_the_stored_weights(smoke_bundle, tmp_path, capsys):
    """--steps K: the first K iterations' loss history bit for bit, and the bundle's weights sampled and
    measured again to its samples and metrics; it fails on a tampered history and on swapped weights."""
    _suite, _store, original = smoke_bundle
    rows = au.audit(original, 2, tmp_path / "quick", log=lambda *_: None, steps=10)
    assert all(r["verdict"].startswith("reproduced: first 10 steps") for r in rows), rows
    assert all(r["loss history identical"] and r["history rows compared"] == 2 and r["samples identical"]
               and r["reproduced"] and r["bit-identical"] for r in rows)  # iterations 0 and 5 of 20 (log_every 5)
    assert main(["audit", str(original), "--cases", "1", "--steps", "10"]) == 0
    assert "1 of 1 case(s) reproduced" in capsys.readouterr().out
    bundle = Path(shutil.copytree(original, tmp_path / "tampered"))
    first, second = sorted(read_json(bundle / bd.MANIFEST)["cases"])

    def nudge_loss(path):
        train = read_json(path)
        train["history"][1]["loss"] *= 1 + 1e-7
        path.write_text(json.dumps(train))

    _rewritten(bundle, f"{first}/train.json", nudge_loss)
    _rewritten(bundle, f"{second}/model.pt", lambda path: shutil.copyfile(original / first / "model.pt", path))
    rows = {r["key"]: r for r in au.audit(bundle, 2, tmp_path / "audit", log=lambda *_: None, steps=10)}
    assert rows[first]["verdict"] == "not reproduced: the first 10 steps' loss history differs from the recorded one"
    assert rows[second]["loss history identical"] and not rows[second]["samples identical"]
    assert rows[second]["verdict"].startswith("not reproduced: the stored weights' samples or metrics differ")
    assert not any(r["reproduced"] or r["bit-identical"] for r in rows.values())


def test_an_audit_reads_the_bundles_noise_floors_and_computes_none(smoke_bundle, tmp_path, monkeypatch):
    """The floors and exact-score oracles depend on the target alone: the audit's store starts with the
    bundle's (checksummed) instead of spending minutes on them again."""
    _suite, _store, bundle = smoke_bundle
    cached = Store.computed_once

    def read_only(path, compute):
        return cached(path, lambda: pytest.fail(f"the audit computed {path} again"))

    monkeypatch.setattr(Store, "computed_once", staticmethod(read_only))
    rows = au.audit(bundle, 2, tmp_path / "quick", log=lambda *_: None, steps=10)
    assert all(r["verdict"].startswith("reproduced: first 10 steps") for r in rows), rows
    assert all(r["where"] == "—" and r["largest relative metric difference"] == 0.0 for r in rows)


ANOTHER_CPU = "another CPU (AVX2)"


def _trained_on(bundle: Path, key: str, platforms: list[dict] | None) -> None:
    """Rewrite a case's train record as if trained on ``platforms`` (None: a record from before they were
    kept, which the audit takes to be the manifest's)."""
    def change(path):
        train = {k: v for k, v in read_json(path).items() if k != "platforms"}
        path.write_text(json.dumps(train if platforms is None else {**train, "platforms": platforms}))
    _rewritten(bundle, f"{key}/train.json", change)


def _elsewhere(original: Path, folder: Path, nudge_sds: float) -> tuple[Path, str]:
    """A copy of the bundle whose first case was trained on another CPU (its train record says so), its
    relative score error moved by ``nudge_sds`` of its standard error (checksums rewritten): (bundle, that
    case's key)."""
    bundle = Path(shutil.copytree(original, folder))
    manifest = read_json(bundle / bd.MANIFEST)
    first = sorted(manifest["cases"])[0]
    _trained_on(bundle, first, [{**bd.platform_here(), "cpu": ANOTHER_CPU}])

    def nudge(path):
        record = read_json(path)
        convergence = record["metrics"]["convergence"]
        convergence["rel_error"] += nudge_sds * convergence["rel_error_se"]
        path.write_text(json.dumps(record))

    _rewritten(bundle, f"{first}/metrics.json", nudge)
    return bundle, first


def test_an_audit_elsewhere_asks_each_quantity_to_agree_within_its_standard_errors(smoke_bundle, tmp_path,
                                                                                   capsys):
    """Another platform cannot give the same bytes: a quantity moved by half its sd is reproduced within
    tolerance there (and not on the bundle's own platform, which asks for the same bytes); moved by five
    sds (3.5 combined standard errors) it is not, and the audit names it."""
    _suite, _store, original = smoke_bundle
    bundle, first = _elsewhere(original, tmp_path / "near", 0.5)
    [row] = au.audit(bundle, 1, tmp_path / "a1", log=lambda *_: None, steps=10, seed=_seed_for(bundle, first))
    assert row["key"] == first and row["verdict"].startswith("reproduced: first 10 steps' loss history within "
                                                             "tolerance"), row["verdict"]
    moved = {q["quantity"]: q for q in row["quantities"]}["convergence.rel_error"]
    assert moved["within tolerance"] and moved["difference"] != 0 and moved["combined se"] > 0, moved
    assert row["reproduced"] and not row["bit-identical"]
    assert main(["audit", str(bundle), "--cases", "1", "--steps", "10", "--seed", str(_seed_for(bundle, first))]) == 0
    assert "1 of 1 case(s) reproduced (0 bit-identically, 1 within tolerance" in capsys.readouterr().out
    assert len(row["quantities"]) >= 4 and all(q["within tolerance"] for q in row["quantities"])
    far, first = _elsewhere(original, tmp_path / "far", 5.0)
    [row] = au.audit(far, 1, tmp_path / "a2", log=lambda *_: None, steps=10, seed=_seed_for(far, first))
    assert row["verdict"].startswith("not reproduced") and "convergence.rel_error beyond 1.96 combined standard " \
        "errors" in row["verdict"], row["verdict"]
    _trained_on(bundle, first, [bd.platform_here()])
    [row] = au.audit(bundle, 1, tmp_path / "a3", log=lambda *_: None, steps=10, seed=_seed_for(bundle, first))
    assert row["verdict"].startswith("not reproduced") and "differs on the platform" in row["verdict"]


@pytest.mark.parametrize("trained_on, manifest_cpu, bit_for_bit", [
    ("here", ANOTHER_CPU, True),  # the case's own record decides, not the manifest's last writer
    ("here then elsewhere", None, False),  # resumed on another machine: no platform reproduces its bytes
    ("not recorded", ANOTHER_CPU, False),  # a record from before platforms were kept: the manifest's
    ("not recorded", None, True),
])
def test_an_audit_asks_for_the_same_bytes_only_on_the_one_platform_a_case_trained_on(
        smoke_bundle, tmp_path, trained_on, manifest_cpu, bit_for_bit):
    """A bundle filled on several machines: each case is judged by the platforms its own training ran on.
    A quantity moved by half its sd is then not reproduced where bytes are asked for, and reproduced within
    tolerance elsewhere."""
    _suite, _store, original = smoke_bundle
    bundle, first = _elsewhere(original, tmp_path / "b", 0.5)
    here, there = bd.platform_here(), {**bd.platform_here(), "cpu": ANOTHER_CPU}
    _trained_on(bundle, first, {"here": [here], "here then elsewhere": [here, there], "not recorded": None}[trained_on])
    if manifest_cpu:
        manifest = read_json(bundle / bd.MANIFEST)
        (bundle / bd.MANIFEST).write_text(json.dumps({**manifest, "cpu": manifest_cpu}))
    [row] = au.audit(bundle, 1, tmp_path / "a", log=lambda *_: None, steps=10, seed=_seed_for(bundle, first))
    assert row["reproduced"] is not bit_for_bit, row["verdict"]
    assert ("differs on the platform the case was trained on" in row["verdict"]) is bit_for_bit


def test_a_training_lists_every_platform_its_chunks_ran_on(tmp_path, monkeypatch):
    """``platforms_so_far``: a fresh training runs here; one resumed from a checkpoint adds this machine to
    the platforms kept beside it (once); a finished case's train record carries them."""
    from fpbench.run import pipeline

    here, there = bd.platform_here(), {**bd.platform_here(), "cpu": ANOTHER_CPU}
    ckpt = tmp_path / "ensembles" / "abc.pt"
    ckpt.parent.mkdir()
    assert pipeline.platforms_so_far(ckpt) == [here]  # no checkpoint: a fresh start, whatever was beside it
    ckpt.write_bytes(b"a checkpoint")
    (tmp_path / "ensembles" / "abc.platforms.json").write_text(json.dumps({"platforms": [there]}))
    assert pipeline.platforms_so_far(ckpt) == [there, here] == pipeline.platforms_so_far(ckpt)
    assert read_json(bd.platforms_file(ckpt)) == {"platforms": [there, here]}
    bd.platforms_file(ckpt).unlink()  # a checkpoint of an older fpbench: its platform is not known
    unknown = pipeline.platforms_so_far(ckpt)
    assert unknown == [dict.fromkeys(bd.PLATFORM_KEYS), here] and not au.same_platform(unknown, here)


@pytest.mark.parametrize("moved, reproduced", [(1e-5, True), (1e-2, False)])
def test_an_audit_elsewhere_asks_the_first_logged_loss_to_agree(smoke_bundle, tmp_path, moved, reproduced):
    """Elsewhere a quick audit's first logged loss must agree within the tolerance: a rounding-sized
    difference passes, one of another seed's size (measured: 4.6e-2 and more) does not."""
    _suite, _store, original = smoke_bundle
    bundle, first = _elsewhere(original, tmp_path / "b", 0.0)

    def nudge_first_loss(path):
        train = read_json(path)
        train["history"][0]["loss"] *= 1 + moved
        path.write_text(json.dumps(train))

    _rewritten(bundle, f"{first}/train.json", nudge_first_loss)
    [row] = au.audit(bundle, 1, tmp_path / "a", log=lambda *_: None, steps=10, seed=_seed_for(bundle, first))
    assert row["verdict"].startswith("reproduced" if reproduced else "not reproduced: the first 10 steps' loss "
                                     "history differs from the recorded one from its first row on"), row["verdict"]


def _seed_for(bundle: Path, key: str) -> int:
    """An audit seed whose one random case is ``key``."""
    import random

    trained = sorted(read_json(bundle / bd.MANIFEST)["cases"])
    return next(s for s in range(100) if random.Random(s).sample(trained, 1) == [key])


@pytest.mark.parametrize("damage", ["missing", "altered"])
def test_a_damaged_bundle_is_a_one_line_error_naming_the_file(smoke_bundle, tmp_path, capsys, damage):
    _suite, _store, original = smoke_bundle
    bundle = Path(shutil.copytree(original, tmp_path / "damaged"))
    key = sorted(read_json(bundle / bd.MANIFEST)["cases"])[0]
    target = bundle / key / "metrics.json"
    if damage == "missing":
        target.unlink()
    else:
        target.write_text(target.read_text().replace('"seed": 0', '"seed": 1', 1))
    assert main(["bundle", "open", str(bundle), "--results", str(tmp_path / "opened")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{key}/metrics.json" in err
    assert ("is missing" if damage == "missing" else "does not match its checksum") in err
    assert not (tmp_path / "opened").exists()
    assert main(["bundle", "verify", str(tmp_path / "nowhere")]) == 2
    assert "not an fpbench bundle" in capsys.readouterr().err


def test_a_bundle_grows_with_the_cases_finished_since(smoke_bundle, tmp_path):
    """A long run bundled chunk by chunk: a case finished later is added, the earlier ones kept."""
    suite, store, _bundle = smoke_bundle
    partial = Path(shutil.copytree(store, tmp_path / "partial"))
    later = sorted(_metrics_by_key(store))[1]
    (partial / later / "metrics.json").unlink()  # not finished yet
    grown = tmp_path / "grown"
    assert main(["bundle", "write", str(grown), "--suite", suite, "--scale", "smoke", "--results", str(partial)]) == 0
    assert later not in read_json(grown / bd.MANIFEST)["cases"]
    assert main(["bundle", "write", str(grown), "--suite", suite, "--scale", "smoke", "--results", str(store)]) == 0
    assert set(bd.verify_bundle(grown)["cases"]) == set(_metrics_by_key(store))
    written = (grown / bd.MANIFEST).read_bytes()
    assert main(["bundle", "write", str(grown), "--suite", suite, "--scale", "smoke", "--results", str(store)]) == 0
    assert (grown / bd.MANIFEST).read_bytes() == written  # nothing new: the committed bundle stays clean


def test_a_run_stopped_part_way_resumes_from_its_bundle_on_a_new_machine(smoke_bundle, tmp_path, capsys,
                                                                         monkeypatch):
    """A chunk of a long run (stopped by --max-minutes) bundled: its ensemble checkpoint travels as resume/
    with the platforms it ran on; opened into an empty store on 'another machine', the same command finishes
    from it, to the numbers of an uninterrupted run, and its train records name both machines."""
    from fpbench.run import pipeline

    suite, _store, _bundle = smoke_bundle
    chunk = tmp_path / "chunk"
    assert main(["run", suite, "--scale", "smoke", "--results", str(chunk), "--max-minutes", "0", "--quiet"]) == 4
    assert list(chunk.glob("ensembles/*.pt"))
    bundle = tmp_path / "bundle"
    assert main(["bundle", "write", str(bundle), "--suite", suite, "--scale", "smoke", "--results", str(chunk)]) == 0
    manifest = bd.verify_bundle(bundle)
    assert not manifest["cases"] and [r for r in manifest["files"] if r.startswith("resume/")]
    assert [(e["models"], e["iteration"]) for e in bd.unfinished_ensembles(bundle, manifest)] == [(2, 0)]
    assert len([r for r in manifest["files"] if r.startswith("resume/") and r.endswith(".platforms.json")]) == 1
    assert main(["bundle", "verify", str(bundle)]) == 0
    assert "unfinished: 2 model(s) trained as one ensemble, at step 0" in capsys.readouterr().out
    elsewhere = tmp_path / "elsewhere"
    assert main(["bundle", "open", str(bundle), "--results", str(elsewhere)]) == 0
    assert list(elsewhere.glob("ensembles/*.pt")) and list(elsewhere.glob("ensembles/*.platforms.json"))
    here, there = bd.platform_here(), {**bd.platform_here(), "cpu": ANOTHER_CPU}
    with monkeypatch.context() as patched:  # this run is on another machine
        patched.setattr(pipeline, "platform_here", lambda: there)
        assert main(["run", suite, "--scale", "smoke", "--results", str(elsewhere), "--quiet"]) == 0
    assert all(read_json(p)["platforms"] == [here, there] for p in elsewhere.glob("*/train.json"))
    assert not list(elsewhere.glob("ensembles/*"))
    whole = tmp_path / "whole"  # uninterrupted, by the same path as the chunk (the fixture's may differ)
    assert main(["run", suite, "--scale", "smoke", "--results", str(whole), "--quiet"]) == 0
    assert _metrics_by_key(elsewhere) == _metrics_by_key(whole)
    assert main(["bundle", "write", str(bundle), "--suite", suite, "--scale", "smoke", "--results",
                 str(elsewhere)]) == 0  # finished: the cases are in, the resume files gone
    manifest = bd.verify_bundle(bundle)
    assert len(manifest["cases"]) == 2 and not [r for r in manifest["files"] if r.startswith("resume/")]
    assert bd.unfinished_ensembles(bundle, manifest) == []
    assert not (bundle / "resume").exists() or not list((bundle / "resume").iterdir())


def test_run_with_a_bundle_opens_it_first_and_gives_it_what_it_finished_or_left(smoke_bundle, tmp_path, capsys):
    """``fpbench run --bundle``: the same chunked run as above in one command per chunk, on two machines."""
    suite, _store, _bundle = smoke_bundle
    bundle = tmp_path / "bundle"
    assert main(["run", suite, "--scale", "smoke", "--results", str(tmp_path / "first"), "--max-minutes", "0",
                 "--quiet", "--bundle", str(bundle)]) == 4
    manifest = bd.verify_bundle(bundle)
    assert not manifest["cases"] and [r for r in manifest["files"] if r.startswith("resume/")]
    assert "with the unfinished ensembles' checkpoints" in capsys.readouterr().out
    assert main(["run", suite, "--scale", "smoke", "--results", str(tmp_path / "second"), "--quiet", "--bundle",
                 str(bundle)]) == 0
    manifest = bd.verify_bundle(bundle)
    assert len(manifest["cases"]) == 2 and not [r for r in manifest["files"] if r.startswith("resume/")]
    assert bd.unfinished_ensembles(bundle, manifest) == []
    assert "2 of this run's 2 case(s) finished, 2 in all" in capsys.readouterr().out
    assert main(["run", suite, "--scale", "smoke", "--seeds", "2", "--only-seed", "1", "--results",
                 str(tmp_path / "second"), "--quiet", "--bundle", str(bundle)]) == 0  # another seed, same bundle
    assert "2 of this run's 2 case(s) finished, 4 in all" in capsys.readouterr().out
    assert main(["run", suite, "--scale", "smoke", "--results", str(tmp_path / "x"), "--shard", "1/2", "--bundle",
                 str(bundle)]) == 2
    assert "--bundle with --shard" in capsys.readouterr().err


def test_the_claim_suites_option_opens_a_bundle_into_their_store(smoke_bundle, tmp_path):
    """``pytest --fpbench-bundle DIR``: the claim suites' store holds the bundle's finished cases before any
    test runs (run in a pytest of its own, as a user runs the claim suite)."""
    import subprocess
    import sys

    _suite, _store, bundle = smoke_bundle
    keys = sorted(bd.read_manifest(bundle)["cases"])
    (tmp_path / "test_opened.py").write_text(
        f"def test_the_bundles_cases_are_done(fpbench_store):\n"
        f"    assert all(fpbench_store.is_done(k) for k in {keys!r})\n")
    opened = tmp_path / "opened"
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_opened.py"),
            "--fpbench-results", str(opened), "--fpbench-bundle", str(bundle)]
    done = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.parent.name for p in opened.glob("*/metrics.json")) == keys


def test_a_case_trained_but_not_measured_travels_in_the_bundle_and_is_not_trained_again(smoke_bundle, tmp_path,
                                                                                       monkeypatch):
    """A run stopped after a model's training ended but before its case was measured: the weights and history
    go to resume/cases/KEY/ (not left on the machine), and on a new machine the case is measured from them
    without training, to the numbers of the uninterrupted run."""
    from fpbench.train import ensemble, loop

    suite, store, _bundle = smoke_bundle
    part = tmp_path / "part"
    shutil.copytree(store, part)
    key = sorted(bd.read_manifest(smoke_bundle[2])["cases"])[0]
    for name in ("metrics.json", "samples.npz"):
        (part / key / name).unlink()  # trained, not yet sampled or measured
    bundle = tmp_path / "bundle"
    assert main(["bundle", "write", str(bundle), "--suite", suite, "--scale", "smoke", "--results", str(part)]) == 0
    manifest = bd.verify_bundle(bundle)
    assert key not in manifest["cases"] and f"resume/cases/{key}/model.pt" in manifest["files"]
    assert bd.unfinished_ensembles(bundle, manifest) == []  # a case's files are not an ensemble's checkpoint
    monkeypatch.setattr(loop, "train", _no_training)
    monkeypatch.setattr(ensemble, "train_ensemble", _no_training)
    elsewhere = tmp_path / "elsewhere"
    assert main(["run", suite, "--scale", "smoke", "--results", str(elsewhere), "--quiet", "--bundle",
                 str(bundle)]) == 0
    assert _metrics_by_key(elsewhere) == _metrics_by_key(store)
    manifest = bd.verify_bundle(bundle)  # the run gave it the finished case; nothing left to resume
    assert key in manifest["cases"] and not [r for r in manifest["files"] if r.startswith("resume/")]


def test_the_committed_bundles_are_whole_and_their_cases_hash_to_their_keys():
    """The bundles behind the committed reports (bundles/): every file matches its checksum and every case's
    configuration hashes to its key (what a report or an audit from them relies on)."""
    from fpbench.run.suite import Case

    committed = sorted(p.parent for p in (Path(__file__).parents[1] / "bundles").glob("*/manifest.json"))
    assert committed, "no committed bundle under bundles/"
    for bundle in committed:
        manifest = bd.verify_bundle(bundle)
        assert manifest["cases"], bundle
        for key in manifest["cases"]:
            assert Case(read_json(bundle / key / "config.json")).key == key, (bundle, key)


def test_the_platform_key_tells_two_hosts_of_one_model_name_apart_by_their_flags():
    """A virtual machine's CPU model name can be as bare as "AMD EPYC" on hosts whose kernels round differently:
    the platform key adds a digest of the instruction-set flags (order-free), so an audit there is not held to
    bit-identity with a case trained on the other."""
    from fpbench.run.bundle import cpu_name

    info = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx2 avx512f\n"
    here, other = cpu_name(info, "AVX512"), cpu_name(info.replace("avx512f", "avx512f avx512_bf16"), "AVX512")
    assert here.startswith("AMD EPYC (AVX512; flags ") and here != other
    assert cpu_name(info.replace("avx2 avx512f", "avx512f avx2"), "AVX512") == here
    assert cpu_name("", "AVX2").endswith("(AVX2)") and "flags" not in cpu_name("", "AVX2")
