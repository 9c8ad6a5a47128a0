"""Result bundles: a results store's finished cases packed so that they outlive the machine.

A bundle is a directory that is itself a read-only results store (``fpbench.run.store``), with a
manifest of what it holds:

    <bundle>/manifest.json           format, fpbench / torch / Python versions, platform, the suite and
                                     scale it was written for, every case (key and label) and the
                                     sha256 of every file below
    <bundle>/<case key>/config.json  the resolved configuration
    <bundle>/<case key>/model.pt     the trained weights (about 53 kB for the authors' network)
    <bundle>/<case key>/train.json   loss history, training time, the path it trained by
    <bundle>/<case key>/samples.npz  the samplers' 64 x 64 node counts (and their first 2,000 points)
    <bundle>/<case key>/metrics.json every metric and the convergence evidence
    <bundle>/floors/<key>.json       the noise floors the cases read
    <bundle>/resume/<hash>.pt        the checkpoints of ensembles still training (a run stopped by
                                     --max-minutes): opened into <store>/ensembles/, the run resumes there

``write_bundle`` adds a store's finished cases to a bundle (a rerun adds the cases finished since, so a
long run chunked with ``--max-minutes`` can be bundled and committed chunk by chunk); ``verify_bundle``
checks every file against the manifest and names the first that is missing or altered; ``open_bundle``
copies a verified bundle into a results store, where reports and the claim suite read it without
training; ``fpbench.run.audit`` retrains randomly chosen cases from scratch and compares what they give
with what the bundle holds. A case of a model trained elsewhere (the authors' checkpoints re-sampled by
``fpbench reference claims --bundle``) has no ``model.pt`` or ``train.json``: its record names the
checkpoint and its sha256.
"""

from __future__ import annotations

import datetime
import hashlib
import platform
import shutil
import sys
from pathlib import Path

from ..core.errors import FpbenchError
from .store import SAMPLES_FILE, Store, read_json, write_json

FORMAT = "fpbench-bundle/1"
MANIFEST = "manifest.json"
CASE_FILES = ("config.json", "model.pt", "train.json", SAMPLES_FILE, "metrics.json")
BUNDLE_LOCK = ".bundle.lock"  # in the store: one process at a time adds to a bundle from it
WEIGHT_FILES = ("model.pt", "train.json")  # what a case trained here has and one of a model trained elsewhere lacks
TRAINED_ELSEWHERE = ("authors", "external")  # model kinds sampled but not trained by fpbench (their weights are
# the authors' checkpoint, named with its sha256 in the record, or a user's file)


def case_files(config: dict) -> tuple[str, ...]:
    """The files of a finished case: all of ``CASE_FILES``, less the weights and training history of a model
    trained elsewhere (the authors', a user's), which has none in the store."""
    if config["model"].get("kind") in TRAINED_ELSEWHERE:
        return tuple(f for f in CASE_FILES if f not in WEIGHT_FILES)
    return CASE_FILES


class BundleError(FpbenchError):
    """A bundle that cannot be used: no manifest, another format, a missing or altered file."""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


PLATFORM_KEYS = ("torch", "machine", "cpu")  # what must match for a case's numbers to be reproduced bit for bit


def environment() -> dict:
    """What a bundle's manifest says about where it was written (``PLATFORM_KEYS``: what must match for its
    numbers to be reproduced bit for bit)."""
    import torch

    from .. import __version__

    return {"fpbench": __version__, "torch": torch.__version__, "python": sys.version.split()[0],
            "platform": platform.platform(), "machine": platform.machine(),
            "cpu": cpu_name(_cpuinfo(), torch.backends.cpu.get_cpu_capability())}


def platform_here() -> dict:
    """This machine's ``PLATFORM_KEYS`` (what a case's train record lists under ``platforms``)."""
    here = environment()
    return {k: here[k] for k in PLATFORM_KEYS}


def cpu_name(cpuinfo: str, capability: str) -> str:
    """The CPU as a platform key: its model name, torch's kernel level and a digest of its instruction-set
    flags (Linux: /proc/cpuinfo). A virtual machine's model name can be as bare as "AMD EPYC" on hosts of
    different generations, whose kernels round differently; their flags tell them apart."""
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)}
    model = fields.get("model name") or platform.processor() or platform.machine()
    flags = fields.get("flags")
    digest = f"; flags {hashlib.sha256(' '.join(sorted(flags.split())).encode()).hexdigest()[:8]}" if flags else ""
    return f"{model} ({capability}{digest})"


def _cpuinfo() -> str:
    """/proc/cpuinfo's text ("" where there is none)."""
    path = Path("/proc/cpuinfo")
    return path.read_text(errors="replace") if path.exists() else ""


def read_manifest(bundle: Path) -> dict:
    path = Path(bundle) / MANIFEST
    if not path.exists():
        raise BundleError(f"{bundle} is not an fpbench bundle: no {MANIFEST}")
    manifest = read_json(path)
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: format {manifest.get('format')!r}, this fpbench reads {FORMAT!r}")
    return manifest


def write_bundle(store_root: Path, cases: list, out: Path, suite: str, scale: str, resumable: bool = True) -> dict:
    """Add the finished ``cases`` of the store at ``store_root`` to the bundle ``out`` (created if needed; the
    cases it already holds are kept, verified); returns the manifest, written last. ``resumable``: keep the
    store's unfinished ensembles' checkpoints too (cases that train; False for cases that do not)."""
    from filelock import FileLock

    store, out = Store(Path(store_root)), Path(out)
    store.root.mkdir(parents=True, exist_ok=True)
    with FileLock(store.root / BUNDLE_LOCK):  # two processes sharing the store, each adding what it finished
        return _write_bundle(store, cases, out, suite, scale, resumable)


def _write_bundle(store: Store, cases: list, out: Path, suite: str, scale: str, resumable: bool) -> dict:
    """``write_bundle``'s work; the manifest is rewritten only when a file was added, replaced or removed (a
    committed bundle stays clean when there is nothing new)."""
    manifest = read_manifest(out) if (out / MANIFEST).exists() else {
        "format": FORMAT, "suite": suite, "scale": scale, "cases": {}, "files": {}}
    before = dict(manifest["files"])
    if manifest["cases"]:
        verify_bundle(out)
    for case in cases:
        if not store.is_done(case.key) or case.key in manifest["cases"]:
            continue
        src = store.case_dir(case.key)
        missing = [f for f in case_files(case.config) if not (src / f).exists()]
        if missing:
            raise BundleError(f"case {case.label} [{case.key}] is finished but lacks {', '.join(missing)}: "
                              "rerun it (`fpbench run` repairs it) before bundling")
        for name in case_files(case.config):
            _copy(src / name, out, f"{case.key}/{name}", manifest)
        for floor in _floor_files(store, read_json(src / "metrics.json")):
            _copy(floor, out, f"floors/{floor.name}", manifest)
        manifest["cases"][case.key] = case.label
    if resumable:
        _keep_resumable_state(store, out, manifest, cases)
    if manifest["files"] == before and (out / MANIFEST).exists():
        return manifest
    manifest.update(environment(), written=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    write_json(out / MANIFEST, manifest)
    return manifest


RESUME = "resume/"  # a bundle's resumable state: ensembles' checkpoints (resume/NAME.pt) and unfinished cases'
RESUME_CASES = "resume/cases/"  # files (resume/cases/KEY/FILE: weights trained but not yet measured, or a
# one-by-one training's checkpoint), put back where the store keeps them by ``open_bundle``
UNFINISHED_FILES = ("config.json", "model.pt", "train.json", SAMPLES_FILE, "checkpoint.pt",
                    "checkpoint.platforms.json")


def platforms_file(checkpoint: Path) -> Path:
    """Beside a training's checkpoint (``X.pt``): the platforms its chunks have run on (``X.platforms.json``),
    kept with it in a bundle's resumable state; ``fpbench.run.pipeline.platforms_so_far`` writes it."""
    return checkpoint.with_name(checkpoint.name.removesuffix(".pt") + ".platforms.json")


def _keep_resumable_state(store: Store, bundle: Path, manifest: dict, cases: list) -> None:
    """The store's unfinished work as ``resume/`` in the bundle, replacing what an earlier write kept: the
    unfinished ensembles' checkpoints (``<store>/ensembles/*.pt``: weights, Adam's state and the data streams
    of a run stopped by ``--max-minutes``) and, of each of ``cases`` not finished, the files it has (trained
    weights and history not yet sampled or measured, samples, a one-by-one training's checkpoint). A long run
    bundled and committed chunk by chunk resumes on a new machine from where it stopped (``open_bundle`` puts
    them back), not from step 0, and never trains again a model whose training had ended."""
    for rel in [r for r in manifest["files"] if r.startswith(RESUME)]:
        (bundle / rel).unlink(missing_ok=True)
        del manifest["files"][rel]
    for checkpoint in sorted((store.root / "ensembles").glob("*.pt")):
        _copy(checkpoint, bundle, f"{RESUME}{checkpoint.name}", manifest)
        if (platforms := platforms_file(checkpoint)).exists():
            _copy(platforms, bundle, f"{RESUME}{platforms.name}", manifest)
    for case in cases:
        src = store.case_dir(case.key)
        if store.is_done(case.key) or not any((src / name).exists() for name in ("model.pt", "checkpoint.pt")):
            continue  # finished (bundled as a case), or nothing of its training to keep
        for name in UNFINISHED_FILES:
            if (src / name).exists():
                _copy(src / name, bundle, f"{RESUME_CASES}{case.key}/{name}", manifest)
    for folder in sorted((bundle / RESUME_CASES.rstrip("/")).glob("*"), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # an unfinished case of an earlier write that has finished since


def _store_path(rel: str) -> str:
    """Where a bundle's file goes in a store (``open_bundle``)."""
    if rel.startswith(RESUME_CASES):
        return rel.removeprefix(RESUME_CASES)
    if rel.startswith(RESUME):
        return "ensembles/" + rel.removeprefix(RESUME)
    return rel


def _copy(src: Path, bundle: Path, rel: str, manifest: dict) -> None:
    dst = bundle / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    manifest["files"][rel] = sha256(dst)


def _floor_files(store: Store, record: dict) -> list[Path]:
    """The store's noise-floor files of this case's target (its floors, and the exact score's oracle's)."""
    target = record["config"]["target"]
    return [p for p in sorted((store.root / "floors").glob("*.json"))
            if read_json(p).get("spec", {}).get("target") == target]


def unfinished_ensembles(bundle: Path, manifest: dict) -> list[dict]:
    """What the bundle's resumable state holds (``resume/``, a verified bundle's): per unfinished ensemble
    its file, how many models it trains, the step it reached and its training seconds so far."""
    import torch

    out = []
    for rel in sorted(r for r in manifest["files"]
                      if r.startswith(RESUME) and not r.startswith(RESUME_CASES) and r.endswith(".pt")):
        state = torch.load(Path(bundle) / rel, weights_only=True)
        out.append({"file": rel, "models": len(state["models"]), "iteration": int(state["iteration"]),
                    "seconds": float(state["seconds"])})
    return out


def verify_bundle(bundle: Path) -> dict:
    """The manifest, once every file it lists is present with its checksum; else a BundleError naming the
    first file that is missing or altered."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    for rel, digest in manifest["files"].items():
        path = bundle / rel
        if not path.exists():
            raise BundleError(f"bundle {bundle} is damaged: {rel} is missing")
        if sha256(path) != digest:
            raise BundleError(f"bundle {bundle} is damaged: {rel} does not match its checksum in {MANIFEST}")
    return manifest


def open_bundle(bundle: Path, store_root: Path) -> Store:
    """Copy a verified bundle's files into the results store at ``store_root`` (files the store already has
    with the same checksum are left); returns the store, ready for ``fpbench report`` and the claim suite."""
    manifest = verify_bundle(bundle)
    store = Store(Path(store_root)).check_writable()
    copy_into_store(bundle, store, manifest)
    return store


def copy_into_store(bundle: Path, store: Store, manifest: dict, prefix: str = "") -> None:
    """The verified bundle's files whose path starts with ``prefix`` (all by default) where ``store`` keeps
    them; files the store already has with the same checksum are left."""
    for rel, digest in manifest["files"].items():
        if not rel.startswith(prefix):
            continue
        dst = store.root / _store_path(rel)
        if dst.exists() and sha256(dst) == digest:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(bundle) / rel, dst)


def open_bundle_if_any(bundle: Path, store_root: Path) -> None:
    """``open_bundle`` where ``bundle`` has been written (a run that starts a bundle finds none yet)."""
    if (Path(bundle) / MANIFEST).exists():
        open_bundle(Path(bundle), store_root)
