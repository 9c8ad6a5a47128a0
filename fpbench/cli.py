"""The ``fpbench`` command: a thin layer over functions a notebook user can call."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from .core.errors import FpbenchError

# torch emits DeprecationWarnings from its own internals on import; they are not the user's concern.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\..*")


# Exit statuses, one outcome each (listed in `fpbench --help`).
EXIT = {"ok": 0, "error": 2, "failed": 3, "stopped": 4, "not reproduced": 5, "busy": 6, "interrupted": 130}
EXIT_HELP = ("exit status: 0 done; 2 a user's error (one line; --debug shows the traceback); 3 some case or "
             "training failed (its failed.json says why, with the traceback under --debug); 4 stopped by "
             "--max-minutes (the same command resumes); 5 an audit did not reproduce a case; 6 cases left to "
             "another fpbench process on the same store; 130 interrupted")
REPORTS_DIR = Path("fpbench-reports")  # where reports go unless --out says: the working directory's, never the
# repository's committed reports/ (those are written only when asked, with --out reports/NAME.md)


class UserError(FpbenchError):
    """A mistake in the user's input: printed as one line, no traceback, exit code 2."""


def _cmd_check(args) -> int:
    from .core.check import CHECK_T0, format_check, run_check
    from .core.residuals import PAPER_BOX, Box

    box = Box(PAPER_BOX.low if args.low is None else args.low, PAPER_BOX.high if args.high is None else args.high)
    def progress(i, total, row):  # the pairs take tens of seconds in all: say which is done
        print(f"[{i}/{total}] {row.target} under {row.sde}: max |R~| {row.max_abs_log_fp:.1e}", file=sys.stderr,
              flush=True)

    rows = run_check(n=args.points, box=box, seed=args.seed, progress=None if args.quiet else progress)
    print(f"Exact-density residuals, float64, {args.points} points uniform in "
          f"[{box.low}, {box.high}]^d x [{CHECK_T0}, T] per row:\n")
    print(format_check(rows))
    worst = max(max(r.max_abs_log_fp for r in rows), 0.0)
    print(f"\nworst max |R~| = {worst:.2e} (expected: round-off, below 1e-8)")
    return 0 if worst < 1e-8 else 1


def _cmd_run(args) -> int:
    import time

    from .run.execute import (
        SlurmOptions,
        fast_settings,
        make_executor,
        plan,
        resolve_device,
        run_tasks,
    )
    from .run.store import Store, results_root

    cases, data = _run_cases(args)
    store = Store(results_root(args.results)).check_writable()
    bundle = _open_run_bundle(args, store)
    resolve_device(args.device)
    how = fast_settings(args.executor, args.workers, args.compile, args.device)
    threads = args.threads
    deadline = time.time() + 60 * args.max_minutes if args.max_minutes is not None else None
    tasks = plan(cases, store.root, args.device, threads, how.workers, ensemble=args.ensemble,
                 compile=how.compile, deadline=deadline, progress=not args.quiet, debug=args.debug)
    print(f"suite {data['suite']['name']}, scale {args.scale}: {len(cases)} case(s) in {len(tasks)} task(s) "
          f"-> {store.root} ({how.describe()})")
    slurm = SlurmOptions(args.slurm_partition, args.slurm_gpus, args.slurm_time, args.slurm_cpus, args.slurm_cluster)
    began = time.perf_counter()
    with make_executor(how.executor, how.workers, args.scheduler, slurm, store.root / "slurm") as executor:
        outcomes = run_tasks(tasks, executor)
    if bundle is not None:
        from .run.bundle import write_bundle

        manifest = write_bundle(store.root, cases, bundle, data["suite"]["name"], args.scale)
        resumable = any(rel.startswith("resume/") for rel in manifest["files"])
        ours = sum(case.key in manifest["cases"] for case in cases)
        print(f"bundle {bundle}: {ours} of this run's {len(cases)} case(s) finished, {len(manifest['cases'])} in all"
              + (", with the unfinished ensembles' checkpoints" if resumable else "")
              + " (commit it: another machine resumes from it)")
    failed = [o for o in outcomes if o.status == "failed"]
    stopped = [o for o in outcomes if o.status == "stopped"]
    busy = [o for o in outcomes if o.status == "busy"]
    done = len(outcomes) - len(failed) - len(stopped) - len(busy)
    hint = "" if getattr(args, "func", None) is _cmd_compare else f"; next: {_report_hint(args)}"  # compare reports
    print(f"finished {done} of {len(outcomes)} case(s) in {time.perf_counter() - began:.0f} s{hint}")
    for o in failed:
        print(f"failed {o.label} [{o.key}]: {o.error}", file=sys.stderr)
    if failed:
        print(f"fpbench: {len(failed)} case(s) failed (reasons in their failed.json; a rerun retries them)",
              file=sys.stderr)
    if stopped:
        print(f"fpbench: stopped at the time budget (--max-minutes {args.max_minutes:g}) with {len(stopped)} case(s) "
              "unfinished; the same command resumes them from their checkpoints", file=sys.stderr)
        return EXIT["stopped"]
    if failed and args.debug:  # where each failure broke, from its failed.json
        for o in failed:
            print((store.failure(o.key) or {}).get("traceback", ""), file=sys.stderr)
    if busy:
        print(f"fpbench: {len(busy)} case(s) left to another fpbench process running them on this store; rerun "
              "the same command when it ends to collect them", file=sys.stderr)
        return EXIT["failed"] if failed else EXIT["busy"]
    return EXIT["failed"] if failed else EXIT["ok"]


def results_source(store_root, bundle=None) -> str:
    """Where a report says its cases came from: the store, or the bundle opened into it."""
    return f"{bundle} (the bundle, opened into {store_root})" if bundle else str(store_root)


def _read_bundle(args) -> None:
    """``--bundle DIR`` of report and compare: the verified bundle opened into the store (``--results``), so
    that its finished cases are read there; the bundle itself is only read."""
    from .run.bundle import open_bundle
    from .run.store import results_root

    if getattr(args, "bundle", None) is not None:
        store = open_bundle(Path(args.bundle), results_root(args.results))
        print(f"read bundle {args.bundle} into {store.root}", file=sys.stderr)


def _report_hint(args) -> str:
    """The report command for this run, with the options the user gave that the report also takes."""
    import shlex

    parts = ["fpbench", "report", args.suite, "--scale", args.scale]
    if getattr(args, "seeds", None) is not None:
        parts += ["--seeds", str(args.seeds)]
    if args.results:
        parts += ["--results", args.results]
    for method in getattr(args, "method", None) or []:
        parts += ["--method", method]
    return " ".join(shlex.quote(p) for p in parts)


def _open_run_bundle(args, store):
    """``--bundle``'s directory, opened into the store first when it exists (a run resumes from its finished
    cases and checkpoints); None without the flag."""
    from .run.bundle import open_bundle_if_any

    if getattr(args, "bundle", None) is None:
        return None
    if args.shard is not None:
        raise UserError("--bundle with --shard: several processes would write one bundle; run the shards, then "
                        "`fpbench bundle write` once")
    open_bundle_if_any(Path(args.bundle), store.root)
    return Path(args.bundle)


def _run_cases(args):
    """The cases of ``fpbench run``: the suite's (plus each ``--method``, beside the suite's own
    methods), its companion score-model suite's, then ``--shard``."""
    from .run.suite import expand, load_suite, with_methods

    data = with_methods(load_suite(args.suite), args.method or [])
    cases = expand(data, args.scale, args.seeds)
    companion = data["suite"].get("score_models")
    if companion:  # the suite's claims also read these cases (C6: free score models)
        extra = expand(load_suite(companion), args.scale, args.seeds)
        print(f"suite {data['suite']['name']} takes its score models from suite {companion}: "
              f"{len(extra)} more case(s)")
        cases += extra
    return _shard(_only_seeds(cases, getattr(args, "only_seed", None)), args.shard), data


def _only_seeds(cases: list, seeds: list[int] | None) -> list:
    """The cases of the ``--only-seed`` seeds (all without the flag): each seed's models then train as their
    own ensemble, so a long run finishes seed by seed and two processes can train two seeds on one store."""
    if not seeds:
        return cases
    have = sorted({c.config["seed"] for c in cases})
    unknown = sorted(set(seeds) - set(have))
    if unknown:
        raise UserError(f"--only-seed {', '.join(map(str, unknown))}: the run's seeds are {have} "
                        "(--seeds sets how many)")
    return [c for c in cases if c.config["seed"] in seeds]


def _shard(cases: list, spec: str | None) -> list:
    """Cases i, i + k, i + 2k, ... for ``--shard i/k`` (i from 1): k processes run disjoint cases."""
    if spec is None:
        return cases
    parts = spec.split("/")
    valid = len(parts) == 2 and all(p.isdigit() for p in parts) and 1 <= int(parts[0]) <= int(parts[1])
    if not valid:
        raise UserError(f"--shard {spec!r}: expected I/K with 1 <= I <= K, e.g. 1/2")
    index, count = int(parts[0]), int(parts[1])
    return cases[index - 1::count]


def writable_out(path) -> Path:
    """``path``'s folder created and probed with a write before any work, so that an unwritable --out is a
    one-line error at once, not after minutes of computing what would go there."""
    from .run.store import unwritable_reason

    path = Path(path)
    if (reason := unwritable_reason(path.parent)) is not None:
        raise UserError(f"cannot write {path}: {reason} (choose another --out)")
    return path


def _cmd_report(args) -> int:
    from pathlib import Path

    from .reports.beyond_report import is_beyond, write_beyond_report
    from .reports.suite_report import write_report
    from .run.store import Store, results_root
    from .run.suite import load_suite, with_methods

    data = with_methods(load_suite(args.suite), args.method or [])
    out = writable_out(args.out or REPORTS_DIR / f"{data['suite']['name']}-{args.scale}.md")
    _read_bundle(args)
    store = Store(results_root(args.results))
    where = results_source(store.root, getattr(args, "bundle", None))
    if is_beyond(data):
        path = write_beyond_report(data, args.scale, store, out, args.seeds, where=where)
    else:
        quiet = getattr(args, "quiet", False)
        log = None if quiet else (lambda message: print(message, file=sys.stderr, flush=True))
        path = write_report(data, args.scale, store, out, args.seeds, calibration_reps=args.calibration_reps,
                            log=log, where=where)
    text = Path(path).read_text()
    answer = _section(text, "Your method against the baseline")
    if answer:  # compare's question answered first on the terminal too
        print("Your method against the baseline:\n" + answer.split("\n\n", 1)[-1])
    print(f"wrote {path}")
    summary = _section(text, "Summary")
    if summary:  # the verdicts on the terminal too
        print(summary)
    return 0


def _section(text: str, title: str) -> str:
    """The body of a report's ``## title`` section ('' where there is none)."""
    marker = f"\n## {title}\n"
    return text.split(marker, 1)[1].split("\n## ", 1)[0].strip() if marker in text else ""


def _cmd_compare(args) -> int:
    """Run the suite (default ``methods``) with the user's method(s) beside its own, then its report; with
    ``--bundle`` the bundle's finished cases (the baseline) are read, not trained, and the bundle is not written."""
    args.shard, args.seeds = None, None
    args.out = str(writable_out(args.out or REPORTS_DIR / f"{args.suite}-{args.scale}.md"))  # before training
    _read_bundle(args)
    args.bundle = None  # run's --bundle would write the user's cases into it
    code = _cmd_run(args)
    if code not in (0, 3):
        return code
    args.calibration_reps = 0
    return _cmd_report(args) or code


def _cmd_list(args) -> int:
    from .core.models import MODELS
    from .core.sde import SDES
    from .core.targets import TARGETS
    from .run.suite import list_suites
    from .train.methods import METHODS, plugin_methods

    for title, names in [("targets", TARGETS), ("sdes", SDES), ("models", MODELS),
                         ("methods", [*METHODS, *plugin_methods()]), ("suites", list_suites())]:
        print(f"{title}: {', '.join(names)}")
    return 0


def _cmd_export(args) -> int:
    from .run.results import export_results, load_results

    writable_out(args.out)
    df = load_results(args.suite, args.scale, args.results, args.seeds)
    if df.empty:
        raise FpbenchError(f"no finished cases of suite {args.suite!r} at scale {args.scale!r}; run "
                         f"`fpbench run {args.suite} --scale {args.scale}` first")
    out = export_results(df, args.out)
    missing = df.attrs.get("missing", [])
    print(f"wrote {len(df)} case(s) x {df.shape[1]} column(s) to {out}"
          + (f"; {len(missing)} case(s) not finished: {', '.join(missing)}" if missing else ""))
    return 0


def _cmd_show(args) -> int:
    import json

    from .run.store import Store, read_json, results_root

    store = Store(results_root(args.results))
    if not store.root.is_dir():
        raise UserError(f"no results store at {store.root} (choose one with --results or $FPBENCH_RESULTS)")
    if args.run is None:
        runs = store.runs()
        for r in runs:
            print(f"{r['key']}  {r['suite']:8s} {r['scale']:6s} {r['status']:8s} {r['case']}")
        print(f"{len(runs)} run(s) under {store.root}; `fpbench show KEY` (a prefix) shows one")
        return 0
    path = store.find(args.run)
    record_path = path / "metrics.json"
    if not record_path.exists():
        cfg = read_json(path / "config.json")
        print(f"run {path.name}: not finished\n{json.dumps(cfg, indent=2)}")
        return 0
    rec = read_json(record_path)
    print(f"run {path.name}: {rec['config']['target']['name']} {rec['config']['method']}")
    print(json.dumps(rec["metrics"], indent=2))
    return 0


def _cmd_bench(args) -> int:
    from pathlib import Path

    from .run.bench import format_bench, run_bench
    from .run.execute import resolve_device

    text = format_bench(run_bench(args.suite, args.scale, args.members, args.iterations, args.n, args.steps,
                                  resolve_device(args.device), args.workers, args.repeats))
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


def _cmd_budget(args) -> int:
    import shlex
    import time
    from pathlib import Path

    from .reports.budget_report import write_budget_report
    from .run.budget import run_study
    from .train.loop import TimeBudgetReached

    study_dir = Path(args.dir)
    if args.action == "run":
        deadline = time.time() + 60 * args.max_minutes if args.max_minutes is not None else None
        try:
            run_study(args.schedules.split(","), str(study_dir), args.workers, compile=not args.no_compile,
                      threads=args.threads, deadline=deadline)
        except TimeBudgetReached as err:
            print(f"fpbench: {err} (--max-minutes {args.max_minutes:g}); the same command resumes from the "
                  f"checkpoints in {study_dir}", file=sys.stderr)
            return EXIT["stopped"]
    report = ["fpbench", "budget", "report", "--dir", study_dir, "--out", args.out]
    command = " ".join(shlex.quote(str(p)) for p in report)
    print(f"wrote {write_budget_report(study_dir, Path(args.out), command)}")
    return 0


def _cmd_bundle(args) -> int:
    from pathlib import Path

    from .run import bundle as bd
    from .run.store import results_root

    if args.action == "verify":
        manifest = bd.verify_bundle(Path(args.path))
        print(f"bundle {args.path}: {len(manifest['cases'])} case(s), {len(manifest['files'])} file(s), checksums "
              f"match (suite {manifest['suite']}, scale {manifest['scale']}; fpbench {manifest['fpbench']}, torch "
              f"{manifest['torch']})")
        for e in bd.unfinished_ensembles(Path(args.path), manifest):
            print(f"  unfinished: {e['models']} model(s) trained as one ensemble, at step {e['iteration']:,} "
                  f"({e['seconds']:,.0f} s of training so far; {e['file']}): the run's command resumes them")
        return 0
    if args.action == "open":
        store = bd.open_bundle(Path(args.path), results_root(args.results))
        manifest = bd.read_manifest(Path(args.path))
        print(f"opened {args.path} into {store.root}: {len(manifest['cases'])} case(s); next: fpbench report "
              f"{manifest['suite']} --scale {manifest['scale']} --results {store.root}")
        return 0
    if args.scale is None:
        raise FpbenchError("fpbench bundle write needs --scale")
    args.shard = None
    cases, data = _run_cases(args)  # the run's cases: the suite's, each --method's and the score-model suite's
    manifest = bd.write_bundle(results_root(args.results), cases, Path(args.path), data["suite"]["name"], args.scale)
    print(f"wrote {args.path}: {len(manifest['cases'])} of {len(cases)} case(s) (the finished ones)")
    return 0


def _cmd_docs(args) -> int:
    from .reports.reference_docs import cli_reference, settings_reference

    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cli.md").write_text(cli_reference(build_parser()))
    (folder / "settings.md").write_text(settings_reference())
    print(f"wrote {folder / 'cli.md'} and {folder / 'settings.md'}")
    return 0


def _cmd_audit(args) -> int:
    import tempfile
    from pathlib import Path

    import pandas as pd

    from .run.audit import audit

    with tempfile.TemporaryDirectory(prefix="fpbench-audit-") as tmp:
        rows = audit(Path(args.path), args.cases, Path(args.work or tmp), args.seed, log=lambda *_: None,
                     steps=args.steps)
    print(pd.DataFrame(rows).drop(columns=["key", "quantities"], errors="ignore").to_markdown(index=False,
                                                                                            floatfmt=".3g"))
    quantities = [{"case": r["case"], **q} for r in rows for q in r.get("quantities", [])]
    if quantities:
        print("\nEach quantity with a standard error, the bundle's against the audit's:\n")
        print(pd.DataFrame(quantities).to_markdown(index=False, floatfmt=".4g"))
    identical = sum(r["reproduced"] and r["bit-identical"] for r in rows)
    reproduced = sum(r["reproduced"] for r in rows)
    print(f"{reproduced} of {len(rows)} case(s) reproduced ({identical} bit-identically, "
          f"{reproduced - identical} within tolerance on another platform)")
    return EXIT["ok"] if reproduced == len(rows) else EXIT["not reproduced"]


def _cmd_evaluate(args) -> int:
    import shlex
    from pathlib import Path

    from .reports.external_report import ANSWER, write_report
    from .run.execute import evaluate_model

    log = (lambda message: None) if args.quiet else print  # noqa: E731
    pairs = evaluate_model(args.model, args.target, args.scale, args.suite, args.seeds, args.results, args.device,
                           log=log)
    out = writable_out(args.out or REPORTS_DIR / f"external-{args.target}-{args.scale}.md")
    command = " ".join(shlex.quote(a) for a in ["fpbench", "evaluate", args.model, "--target", args.target,
                                                  "--scale", args.scale, "--suite", args.suite,
                                                  "--seeds", str(args.seeds), "--out", str(out)])
    path = write_report(pairs, args.model, out, command)
    answer = _section(Path(path).read_text(), ANSWER)
    print(f"{ANSWER}:\n" + answer.split("\n\n", 1)[-1])  # the question answered first on the terminal too
    print(f"wrote {path}")
    return 0


def _cmd_lab(args) -> int:
    import time
    from pathlib import Path

    from .reports.lab_report import write_report
    from .run.lab import load_lab, run_lab
    from .run.store import results_root

    started = time.perf_counter()
    log = (lambda message: None) if args.quiet else (lambda message: print(message, flush=True))  # noqa: E731
    frame = run_lab(args.scale, str(results_root(args.results)), log=log, workers=args.workers)
    out = Path(args.out or REPORTS_DIR / ("lab.md" if args.scale == "quick" else f"lab-{args.scale}.md"))
    command = (f"fpbench lab --scale {args.scale}" + (f" --results {args.results}" if args.results else "")
               + (f" --out {args.out}" if args.out else ""))
    path = write_report(frame, load_lab(args.scale), out, command, time.perf_counter() - started,
                        calibration_reps=args.calibration_reps)
    print(f"wrote {path}")
    return 0


def _cmd_reference(args) -> int:
    from pathlib import Path

    from .analysis.reference import recompute_tables, reference_dir
    from .run.store import results_root

    root = reference_dir(args.dir)
    if args.action == "tables":
        cells = recompute_tables(root)
        for c in cells:
            print(f"{c.table:11s} {c.target:9s} w_R={c.w_r:<5} recomputed {c.printed}  paper {c.paper:.6f}  "
                  f"{'equal' if c.matches else 'DIFFERENT'}")
        matched = sum(c.matches for c in cells)
        print(f"{matched} of {len(cells)} cells equal the paper to the printed digits")
        return 0 if matched == len(cells) else 1
    if args.action == "intervals":
        from .analysis.paper_intervals import STORE_DIR, Settings, run_study
        from .reports.intervals_report import write_intervals_report

        tables = {"tables": tuple(args.tables.split(","))} if args.tables else {}
        study = run_study(root, results_root(args.results) / STORE_DIR, Settings(reps=args.reps),
                          **tables)
        out = Path(args.out or REPORTS_DIR / "paper-intervals.md")
        command = "fpbench reference intervals" + (f" --tables {args.tables}" if args.tables else "")
        print(f"wrote {write_intervals_report(study, out, command)}")
        return 0
    if args.action == "spreads":
        from .analysis.paper_intervals import STORE_DIR, Settings, cell_records, write_spreads_module

        settings = Settings(reps=args.reps)
        cells = cell_records(root, results_root(args.results) / STORE_DIR, settings)
        print(f"wrote {write_spreads_module(cells, settings)}")
        return 0
    if args.action == "claims":
        return _reference_claims(root, args)
    if args.action == "levels":
        from .analysis.reference import convergence_levels, write_levels_module

        print(f"wrote {write_levels_module(convergence_levels(root))}")
        return 0
    from .reports.reference_report import write_reference_report

    log = (lambda message: None) if args.quiet else (lambda message: print(message, flush=True))  # noqa: E731
    out = write_reference_report(root, results_root(args.results), Path(args.out or REPORTS_DIR / "reference.md"),
                                 run=not args.no_run, log=log, compile=not args.no_compile)
    print(f"wrote {out}")
    return 0


def _reference_claims(root, args) -> int:
    """The claims about trained models on the authors' 12 models re-sampled as cases of the paper suite
    (resumable; with --bundle, committed as it goes) -> report."""
    import time
    from pathlib import Path

    from .analysis.published import authors_results, run_authors
    from .reports.authors_report import write_authors_report
    from .run.store import Store, results_root

    store_root = results_root(args.results)
    bundle = Path(args.bundle) if args.bundle else None
    deadline = time.time() + 60 * args.max_minutes if args.max_minutes is not None else None
    if args.no_run:
        df, records, missing = authors_results(Store(store_root), args.seeds, bundle)
    else:
        log = (lambda message: None) if args.quiet else (lambda message: print(message, flush=True))  # noqa: E731
        df, records, missing = run_authors(root, str(store_root), args.seeds, log=log, compile=not args.no_compile,
                                           bundle=bundle, deadline=deadline)
    where = results_source(store_root, bundle)
    out = write_authors_report(df, records, missing, Path(args.out or REPORTS_DIR / "reference-claims.md"), where,
                               args.calibration_reps, args.seeds)
    print(f"wrote {out}" + (f" ({len(missing)} case(s) not finished)" if missing else "")
          + (f"; bundle {bundle}" if bundle else ""))
    if missing and deadline is not None and time.time() >= deadline and not args.no_run:
        print(f"fpbench: stopped at the time budget (--max-minutes {args.max_minutes:g}); the same command resumes "
              "from the finished cases", file=sys.stderr)
        return EXIT["stopped"]
    return 0


class _Parser(argparse.ArgumentParser):
    """A command line mistake in one line, naming the help to read (not the whole usage above it)."""

    def error(self, message: str):
        self.exit(EXIT["error"], f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="fpbench", description=__doc__, epilog=EXIT_HELP)
    parser.add_argument("--version", action="version", version=f"fpbench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    check = sub.add_parser("check", help="residuals of the exact densities (the oracle self-check)")
    check.add_argument("--points", type=int, default=500)
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--quiet", action="store_true", help="no progress lines")
    check.add_argument("--low", type=float, default=None, help="the box's low edge (default: the paper's)")
    check.add_argument("--high", type=float, default=None, help="the box's high edge (default: the paper's)")
    check.set_defaults(func=_cmd_check)

    run = sub.add_parser("run", help="run a suite's cases at a scale (resumes; finished cases are skipped)")
    run.add_argument("suite", help="suite name (suites/NAME.toml) or path")
    run.add_argument("--scale", required=True)
    run.add_argument("--seeds", type=_positive_int, default=None, help="number of seeds (default: the scale's)")
    run.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    run.add_argument("--results", default=None, help="results root (default $FPBENCH_RESULTS or ./results)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--shard", default=None, metavar="I/K",
                     help="run only cases I, I+K, I+2K, ... (K processes, one per shard, share one store)")
    run.add_argument("--only-seed", type=int, action="append", default=None, metavar="K",
                     help="run only the cases of seed K (repeatable; K < --seeds): a long run seed by seed, each "
                          "seed's models one ensemble, finished and bundled before the next; two processes on one "
                          "store can take two seeds")
    run.add_argument("--method", action="append", default=None, metavar="MODULE:CLASS",
                     help="also run this method (module:Class, file.py:Class or an entry-point name) "
                          "on the suite's targets, beside its own methods; repeatable")
    run.add_argument("--no-ensemble", dest="ensemble", action="store_false",
                     help="train every case on its own (default: same-shape cases train as one ensemble)")
    run.add_argument("--max-minutes", type=float, default=None,
                     help="stop starting training iterations, ensembles and cases after this many minutes (the "
                          "ensembles under way keep their checkpoints; the run's first ensemble always starts); "
                          "the same command resumes; exit status 4 when stopped, 6 when another process holds cases")
    run.add_argument("--bundle", default=None, metavar="DIR",
                     help="a result bundle (e.g. bundles/paper-converged): opened into --results first, and given the "
                          "finished cases and the unfinished ensembles' checkpoints when the run ends or stops, so "
                          "that a long run committed chunk by chunk resumes on another machine")
    _add_execution_flags(run)
    run.add_argument("--threads", type=int, default=None, help="torch threads per task (default 1: the workers give "
                     "the parallelism; another count may change a case's last bits, and its record says which)")
    run.add_argument("--scheduler", default=None, help="Dask scheduler address (default: a LocalCluster)")
    run.add_argument("--slurm-partition", default=None)
    run.add_argument("--slurm-gpus", type=int, default=0, help="GPUs per job")
    run.add_argument("--slurm-time", type=int, default=60, help="minutes per job")
    run.add_argument("--slurm-cpus", type=int, default=2, help="CPUs per job")
    run.add_argument("--slurm-cluster", default="slurm", choices=["slurm", "local"],
                     help="'local' runs the Slurm jobs as local processes through submitit (for testing)")
    run.set_defaults(func=_cmd_run)

    comp = sub.add_parser("compare", help="benchmark your method(s) against the built-in ones: run + report")
    comp.add_argument("method", nargs="+", help="module:Class, file.py:Class or an entry-point name")
    comp.add_argument("--suite", default="methods")
    comp.add_argument("--scale", required=True)
    comp.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    comp.add_argument("--results", default=None)
    comp.add_argument("--out", default=None, help=f"report file (default {REPORTS_DIR}/SUITE-SCALE.md)")
    comp.add_argument("--quiet", action="store_true")
    _add_execution_flags(comp)
    comp.add_argument("--max-minutes", type=float, default=None,
                      help="as for run: stop in time (exit 4, no report); the same command resumes")
    comp.add_argument("--bundle", default=None, metavar="DIR",
                      help="take the finished cases of the bundle DIR (e.g. bundles/paper-converged with --suite "
                           "paper: the baseline) instead of training them; only your method's cases are trained, "
                           "and the bundle is not written")
    comp.set_defaults(func=_cmd_compare, **_defaults_not_in(run, comp))  # run's execution defaults, declared once


    report = sub.add_parser("report", help=f"write {REPORTS_DIR}/SUITE-SCALE.md (in the working directory) from "
                            "the results; the repository's committed reports are written only with --out reports/...")
    report.add_argument("suite")
    report.add_argument("--scale", required=True)
    report.add_argument("--seeds", type=_positive_int, default=None)
    report.add_argument("--calibration-reps", type=int, default=1000,
                        help="synthetic data sets per claim test in the calibration section (default 1000)")
    report.add_argument("--results", default=None)
    report.add_argument("--quiet", action="store_true", help="no progress lines (the summary is printed still)")
    report.add_argument("--out", default=None, help=f"output file (default {REPORTS_DIR}/SUITE-SCALE.md)")
    report.add_argument("--method", action="append", default=None, metavar="MODULE:CLASS",
                        help="include the cases of this method run with `fpbench run --method` (repeatable)")
    report.add_argument("--bundle", default=None, metavar="DIR",
                        help="report from the bundle DIR (e.g. bundles/paper-converged): it is verified and opened "
                             "into --results first, as `fpbench bundle open` does; no training")
    report.set_defaults(func=_cmd_report)

    bench = sub.add_parser("bench", help="performance: fpbench's kernels against straightforward ones, one run")
    bench.add_argument("--suite", default="paper")
    bench.add_argument("--scale", default="quick")
    bench.add_argument("--members", type=int, default=12)
    bench.add_argument("--iterations", type=int, default=50, help="training iterations per model")
    bench.add_argument("--n", type=int, default=20_000, help="particles per model for the sampling benchmark")
    bench.add_argument("--steps", type=int, default=50, help="Euler steps for the sampling benchmark")
    bench.add_argument("--workers", type=int, default=2, help="processes for the process-pool training row")
    bench.add_argument("--repeats", type=int, default=3, help="timings per training row (median and range reported)")
    bench.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    bench.add_argument("--out", default=None, help="also write the markdown here (e.g. reports/performance.md)")
    bench.set_defaults(func=_cmd_bench)

    budget = sub.add_parser("budget", help="the budget study: training schedules against the convergence gate")
    budget.add_argument("action", choices=["run", "report"], help="run: train the schedules (resumable), then "
                        "write the report; report: the report from finished schedules")
    budget.add_argument("--schedules", default="steps-12k,high-lr-12k",
                        help="comma-separated names of fpbench.run.budget.SCHEDULES")
    budget.add_argument("--workers", type=int, default=2, help="schedules trained at once")
    budget.add_argument("--threads", type=int, default=1, help="torch threads per schedule")
    budget.add_argument("--no-compile", action="store_true", help="eager loss terms (no C++ compiler needed)")
    budget.add_argument("--max-minutes", type=float, default=None,
                        help="stop training after this many minutes, at a checkpoint the same command resumes from")
    budget.add_argument("--dir", default="reports/budget-records",
                        help="the study's records (<schedule>.json, kept in the repository) and its working files")
    budget.add_argument("--out", default=str(REPORTS_DIR / "budget.md"), help="the report (the repository's: "
                        "--out reports/budget.md)")
    budget.set_defaults(func=_cmd_budget)

    ev = sub.add_parser("evaluate", help="a model trained elsewhere (module:factory, file.py:factory or a "
                        "TorchScript file) measured like fpbench's own, beside the built-in baseline -> a report")
    ev.add_argument("model", help="module:factory, path/file.py:factory (returns an object with score(x, t) and "
                    "optionally potential(x, t)) or a TorchScript file with a score method")
    ev.add_argument("--target", required=True, help="the built-in target the model was trained on")
    ev.add_argument("--scale", required=True)
    ev.add_argument("--suite", default="paper", help="whose baseline (w_R = 0) and settings to use (default paper)")
    ev.add_argument("--seeds", type=_positive_int, default=1,
                    help="seeds 0..K-1: a factory taking `seed` builds one model per seed; paired tests need 2+")
    ev.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ev.add_argument("--results", default=None)
    ev.add_argument("--out", default=None, help=f"report file (default {REPORTS_DIR}/external-TARGET-SCALE.md)")
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(func=_cmd_evaluate)

    bundle = sub.add_parser("bundle", help="result bundles: a store's finished cases packed with checksums, to "
                            "commit and reopen on another machine (fpbench/run/bundle.py)")
    bundle.add_argument("action", choices=["write", "open", "verify"],
                        help="write: add the finished cases of SUITE at --scale in --results to the bundle PATH "
                             "(a rerun adds the cases finished since); open: copy the verified bundle PATH into "
                             "--results, where `fpbench report` and the claim suite read it; verify: check PATH's "
                             "checksums")
    bundle.add_argument("path", help="the bundle's directory (e.g. bundles/paper-converged)")
    bundle.add_argument("--suite", default="paper", help="write: whose cases (its score-model suite's too)")
    bundle.add_argument("--scale", default=None, help="write: the scale (required there)")
    bundle.add_argument("--seeds", type=_positive_int, default=None)
    bundle.add_argument("--method", action="append", default=None, metavar="MODULE:CLASS",
                        help="write: also the cases of this method of your own, as `fpbench run --method` ran them")
    bundle.add_argument("--results", default=None)
    bundle.set_defaults(func=_cmd_bundle)

    docs = sub.add_parser("docs", help="regenerate docs/cli.md and docs/settings.md from the code")
    docs.add_argument("--dir", default="docs", help="where (default docs/ of the working directory)")
    docs.set_defaults(func=_cmd_docs)

    audit = sub.add_parser("audit", help="retrain N randomly chosen cases of a bundle from scratch and compare "
                           "their weights, samples and metrics with the bundle's: the same bytes on the platform "
                           "it was written on, elsewhere each quantity within its standard errors")
    audit.add_argument("path", help="the bundle's directory")
    audit.add_argument("--cases", type=_positive_int, default=2, help="how many cases (default 2)")
    audit.add_argument("--seed", type=int, default=0, help="which cases: the random choice's seed")
    audit.add_argument("--steps", type=_positive_int, default=None, metavar="K",
                       help="a quick audit: retrain only each case's first K iterations (their loss history against "
                            "the recorded one, bit for bit; elsewhere its first row within a tolerance), and sample "
                            "and measure the bundle's weights again (minutes where a full retrain takes hours)")
    audit.add_argument("--work", default=None, help="an empty folder for the retrained cases (default: a "
                       "temporary one, removed afterwards)")
    audit.set_defaults(func=_cmd_audit)

    lab = sub.add_parser("lab", help="the error-injection lab: exact scores with planted errors (no training) -> "
                         "claims L1-L4 and reports/lab.md (resumable)")
    lab.add_argument("--scale", default="quick", help="a scale of suites/lab.toml (default quick)")
    lab.add_argument("--results", default=None)
    lab.add_argument("--out", default=None, help=f"report file (default {REPORTS_DIR}/lab.md at quick, else "
                     f"{REPORTS_DIR}/lab-SCALE.md)")
    lab.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1,
                     help="processes of one thread each (default: one per core)")
    lab.add_argument("--calibration-reps", type=int, default=100,
                     help="synthetic frames per calibration row of the lab's tests (default 100; 0 leaves it out)")
    lab.add_argument("--quiet", action="store_true")
    lab.set_defaults(func=_cmd_lab)

    ref = sub.add_parser("reference", help="the authors' checkpoints and histograms")
    ref.add_argument("action", choices=["tables", "evaluate", "levels", "intervals", "spreads", "claims"],
                     help="tables: Tables 1-3 from the histograms; intervals: the same with error bars at the paper's "
                          "n -> reports/paper-intervals.md (resumable); spreads: the cells' bootstrap replicates "
                          "alone (intervals' cells, shared with it) -> fpbench/analysis/paper_spreads.py (the "
                          "distance to the paper in its own half-widths, in every suite report); evaluate: the 12 "
                          "models re-sampled (the first seed of claims) against the published histograms -> "
                          "reports/reference.md; claims: the claims about trained models decided on the 12 "
                          "checkpoints re-sampled at several seeds -> "
                          "reports/reference-claims.md (resumable; hours of CPU); "
                          "levels: the models' convergence evidence -> fpbench/analysis/authors_levels.py (the gate's "
                          "yardstick)")
    ref.add_argument("--dir", default=None, help="artefacts (default $FPBENCH_REFERENCE or ../shared/paper/reference)")
    ref.add_argument("--results", default=None)
    ref.add_argument("--out", default=None, help=f"report file (default {REPORTS_DIR}/reference.md for evaluate, "
                     "paper-intervals.md for intervals, reference-claims.md for claims)")
    ref.add_argument("--tables", default=None, help="intervals: only these tables (w2_ode_sde,w2_ode_p0,w2_sde_p0)")
    ref.add_argument("--reps", type=int, default=10, help="intervals, spreads: bootstrap replicates per cell")
    ref.add_argument("--seeds", type=_positive_int, default=None,
                     help="claims: sampling seeds per model (default AUTHORS_RESAMPLING's, fpbench/run/config.py)")
    ref.add_argument("--calibration-reps", type=_positive_int, default=1000,
                     help="claims: synthetic data sets per claim test in the calibration (default 1000)")
    ref.add_argument("--no-run", action="store_true", help="evaluate, claims: report the finished cases only, run none")
    ref.add_argument("--bundle", default=None,
                     help="claims: a result bundle of the cases (e.g. bundles/reference-claims): opened into --results "
                          "first, and given each case as it finishes (commit it as it grows: another machine "
                          "resumes from it); with --no-run, the store's finished cases are added to it")
    ref.add_argument("--max-minutes", type=float, default=None,
                     help="claims: start no case after this many minutes (exit status 4; the same command resumes)")
    ref.add_argument("--no-compile", action="store_true",
                     help="evaluate, claims: the samplers' score eager, not through torch.compile (no C++ compiler "
                          "needed; without one the compiled path falls back by itself)")
    ref.add_argument("--quiet", action="store_true")
    ref.set_defaults(func=_cmd_reference)

    lst = sub.add_parser("list", help="targets, SDEs, models, methods and suites")
    lst.set_defaults(func=_cmd_list)

    export = sub.add_parser("export", help="a suite's results table (one row per case) to Parquet or CSV")
    export.add_argument("suite", help="suite name (suites/NAME.toml) or path")
    export.add_argument("--scale", required=True)
    export.add_argument("--out", required=True, help="FILE.parquet (typed; needs pyarrow) or FILE.csv")
    export.add_argument("--seeds", type=int, default=None)
    export.add_argument("--results", default=None)
    export.set_defaults(func=_cmd_export)

    show = sub.add_parser("show", help="the runs in the store, or the metrics of one run (a prefix of its key)")
    show.add_argument("run", nargs="?", default=None, help="a prefix of the run's key (none: list every run)")
    show.add_argument("--results", default=None)
    show.set_defaults(func=_cmd_show)
    return parser


def _add_execution_flags(parser: argparse.ArgumentParser) -> None:
    """How a run executes (``run`` and ``compare``); unset, ``execute.fast_settings`` picks the fastest."""
    from .run.execute import EXECUTORS

    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="the ensembles' loss terms through torch.compile (a one-off tracing cost per process, "
                             "then faster iterations: reports/performance.md; default: on the CPU where a C++ "
                             "compiler is found)")
    parser.add_argument("--executor", default="auto", choices=list(EXECUTORS),
                        help="auto (default): a process pool, one worker per core, where there are 2 or more "
                             "cores on the CPU, else inprocess")
    parser.add_argument("--workers", type=_positive_int, default=None,
                        help="processes for --executor process/dask (default: one per core)")


def _defaults_not_in(parser: argparse.ArgumentParser, other: argparse.ArgumentParser) -> dict:
    """``parser``'s option defaults for the destinations ``other`` does not declare itself."""
    declared = {a.dest for a in other._actions}
    return {a.dest: a.default for a in parser._actions if a.dest not in declared and a.dest != "help"}


def _positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (argparse turns the ValueError into a one-line error, exit 2)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # --help and --version end here, before torch is imported
    from .train.loop import TrainingError

    try:
        return args.func(args)
    except FpbenchError as err:  # a user's mistake or an expected condition: one line; anything else is a bug
        if args.debug:
            raise
        print(f"fpbench: error: {err} (--debug shows the traceback)", file=sys.stderr)
        return EXIT["error"]
    except TrainingError as err:
        if args.debug:
            raise
        print(f"fpbench: training failed: {err}", file=sys.stderr)
        return EXIT["failed"]
    except KeyboardInterrupt:
        print("fpbench: interrupted; finished work is stored, rerun the same command to resume", file=sys.stderr)
        return EXIT["interrupted"]


if __name__ == "__main__":
    sys.exit(main())
