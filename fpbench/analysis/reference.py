"""The authors' published artefacts (``../shared/paper/REFERENCE.md``): 12 checkpoints and the 64 x 64
histograms of 3,000,000 ODE, SDE and data samples behind Tables 1-3.

Checkpoints are pickled ``models.Net`` modules. They are loaded with ``torch.load(weights_only=True)``
and an allowlist of exactly the classes they need (a stand-in ``models.Net`` with no code of its own,
``Linear``, ``Softplus``, ``OrderedDict``, ``set``): a pickle that references anything else is refused.
The tensors are then mapped into fpbench's ``PotentialMLP`` after checking the architecture.
"""

from __future__ import annotations

import collections
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core import streams
from ..core.errors import FpbenchError
from ..core.metrics import TABLE_PAIRS, from_xy_order, grid_w2_from_weights
from ..core.models import PotentialMLP
from .paper_values import TABLES, TARGETS, W_R

ENV_VAR = "FPBENCH_REFERENCE"
LAYERS = (("input", 0), ("hidden1", 2), ("hidden2", 4), ("output", 6))  # authors' name -> index in net


class ReferenceError(FpbenchError):
    """A missing, tampered or unexpected reference artefact."""


class _AuthorsNet(torch.nn.Module):
    """Stand-in for the authors' ``models.Net``: unpickling fills its attributes; none of their code runs."""


_AuthorsNet.__module__, _AuthorsNet.__name__, _AuthorsNet.__qualname__ = "models", "Net", "Net"
ALLOWED = [_AuthorsNet, torch.nn.Linear, torch.nn.Softplus, collections.OrderedDict, set]


def reference_dir(option: str | None = None) -> Path:
    """--dir, else $FPBENCH_REFERENCE, else ../shared/paper/reference (from here or the repository).
    A directory that is named explicitly must exist: no silent fallback."""
    explicit = option or os.environ.get(ENV_VAR)
    if explicit:
        if not Path(explicit).is_dir():
            raise ReferenceError(f"reference artefacts not found at {explicit}")
        return Path(explicit)
    candidates = ["../shared/paper/reference", str(Path(__file__).resolve().parents[3] / "shared/paper/reference")]
    for c in candidates:
        if Path(c).is_dir():
            return Path(c)
    raise ReferenceError(f"reference artefacts not found: give --dir or set ${ENV_VAR} (looked in {candidates})")


def checkpoint_path(root: Path, target: str, w_r: float) -> Path:
    folder = root / "checkpoints" / target / f"w{w_r:.1f}"
    files = sorted(folder.glob(f"{target}_net__FP_weight_{w_r:.1f}__iteration_*"))
    if not files:
        raise ReferenceError(f"no checkpoint for {target}, w_R = {w_r} in {folder}")
    return files[-1]


def load_checkpoint(path: Path, dtype=torch.float64) -> PotentialMLP:
    """The authors' network as a ``PotentialMLP`` (input (t, x, y), 3 Softplus(100) layers of 80)."""
    try:
        with torch.serialization.safe_globals(ALLOWED):
            net = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # anything a file can make torch.load raise; torch's own text is not passed on
        raise ReferenceError(f"refusing checkpoint {path}: {_refusal_reason(err)}; fpbench loads only the "
                             "authors' plain networks, with no code of the file's choosing") from None
    return _to_potential(net, path).to(dtype)


def _refusal_reason(err: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in fpbench's words: torch's message
    suggests loading with ``weights_only=False``, which would run whatever code the file names."""
    found = re.search(r"(?:[Uu]nsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(err))
    if found:
        return f"it names code outside the allowlist ({found.group(1)})"
    truncated = ("zip archive" in str(err)) or ("central directory" in str(err))
    if isinstance(err, (EOFError, OSError, zipfile.BadZipFile)) or truncated:
        return f"it is truncated or not a torch checkpoint ({type(err).__name__})"
    return f"it is not a plain authors' network ({type(err).__name__})"


def _to_potential(net, path: Path) -> PotentialMLP:
    modules = getattr(net, "_modules", None)
    if not isinstance(net, _AuthorsNet) or modules is None:
        raise ReferenceError(f"refusing checkpoint {path}: holds {type(net).__name__}, not models.Net")
    expected = {"input": (80, 3), "hidden1": (80, 80), "hidden2": (80, 80), "output": (1, 80)}
    for name, shape in expected.items():
        layer = modules.get(name)
        if not isinstance(layer, torch.nn.Linear) or tuple(layer.weight.shape) != shape:
            raise ReferenceError(f"refusing checkpoint {path}: layer {name!r} is not Linear{shape[::-1]}")
    act = modules.get("activation")
    if not isinstance(act, torch.nn.Softplus):
        raise ReferenceError(f"refusing checkpoint {path}: activation is {type(act).__name__}, not Softplus")
    if act.threshold != torch.nn.Softplus().threshold:  # PotentialMLP's Softplus uses torch's default
        raise ReferenceError(f"refusing checkpoint {path}: Softplus threshold {act.threshold}, expected 20")
    model = PotentialMLP(dim=2, width=80, depth=3, beta=float(act.beta))
    state = {}
    for name, index in LAYERS:
        state[f"net.{index}.weight"] = modules[name].weight.detach().double()
        state[f"net.{index}.bias"] = modules[name].bias.detach().double()
    model.double().load_state_dict(state)
    return model


# ----- the published histograms -----------------------------------------------------------------

def histogram(root: Path, kind: str, target: str, w_r: float | None = None) -> np.ndarray:
    """A published histogram in fpbench's node order (``metrics.grid_histogram``): the files hold
    their weights in ``meshgrid``'s 'xy' order, which is transposed here, the one place it is read."""
    d = root / "precomputed_dists"
    name = (f"weights_truth_64_3000000_{target}.npy" if kind == "truth"
            else f"weights_{kind}_64_3000000_100000_800_{target}_{w_r:.1f}.npy")
    path = d / name
    if not path.exists():
        raise ReferenceError(f"missing published histogram {path}")
    weights = np.load(path, allow_pickle=False)
    if weights.shape != (4096,) or not np.isfinite(weights).all() or weights.min() < 0:
        raise ReferenceError(f"unexpected histogram {path}: shape {weights.shape}")
    return from_xy_order(weights)


@dataclass(frozen=True)
class TableCell:
    table: str
    target: str
    w_r: float
    recomputed: float
    paper: float

    @property
    def printed(self) -> str:
        return f"{self.recomputed:.6f}"

    @property
    def matches(self) -> bool:
        """Equal to the paper's value to the digits it prints (six decimals)."""
        return self.printed == f"{self.paper:.6f}"


def table_histograms(root: Path, table: str, target: str, w_r: float) -> tuple[np.ndarray, np.ndarray]:
    """The two published histograms behind a cell of Tables 1-3 (``metrics.TABLE_PAIRS``; p0 is the
    published data histogram, "truth")."""
    _name, *kinds = next(pair for pair in TABLE_PAIRS if pair[0] == table)
    return tuple(histogram(root, "truth" if kind == "p0" else kind, target, w_r) for kind in kinds)


def recompute_tables(root: Path, targets=TARGETS) -> list[TableCell]:
    """All 36 cells of Tables 1-3 (12 per target) from the published histograms with fpbench's grid W2^2."""
    cells = []
    for target in targets:
        for w_r in W_R:
            for table, *_kinds in TABLE_PAIRS:
                a, b = table_histograms(root, table, target, w_r)
                paper = TABLES[table][w_r][TARGETS.index(target)]
                cells.append(TableCell(table, target, w_r, grid_w2_from_weights(a, b), paper))
    return cells


# ----- re-evaluating the published models -------------------------------------------------------

def _sampled(model, sde, n: int, nfe: int, seed: int, ode_only: bool = False):
    """(ODE, SDE) samples of a published model on the authors' refined grid, sampled as the runner
    samples fpbench's own models (the jet score, under the training's CPU settings); with
    ``ode_only`` the ODE's alone, from the same prior draws, and None."""
    from ..core.jet import fast_score
    from ..core.samplers import refined_grid, sample_pair
    from ..train.process import cpu_settings

    with cpu_settings():
        return sample_pair(fast_score(model), sde, n, 2, refined_grid(sde.T, nfe), seed, chunk=100_000,
                           sde_too=not ode_only)


def ode_nfe_sensitivity(root: Path, target_name: str, w_r: float, n: int, nfes=(200, 800), seed: int = 0) -> dict:
    """The published model's ODE samples at several step counts (the authors' refined grid), each
    compared with the published ODE histogram and with the others, and the noise floor at ``n``
    (two independent p0 draws): how much of a difference from theirs is the step count?"""
    from ..core import metrics as mx
    from ..core.sde import make_sde
    from ..core.targets import make_target

    model = load_checkpoint(checkpoint_path(root, target_name, w_r), dtype=torch.float32)
    sde, target = make_sde("ou"), make_target(target_name)
    hists = {}
    for nfe in nfes:
        hists[nfe] = mx.grid_histogram(_sampled(model, sde, n, nfe, seed + 1, ode_only=True)[0])
    published = histogram(root, "ode", target_name, w_r)
    out = {"target": target_name, "w_r": w_r, "n": n, "nfes": list(nfes),
           "vs_published": {str(k): mx.grid_w2_from_weights(h, published) for k, h in hists.items()}}
    out["between"] = mx.grid_w2_from_weights(hists[nfes[0]], hists[nfes[-1]])
    out["floor"] = mx.grid_noise_floor(lambda k, g: target.sample(k, g), n, 3, seed=seed + 3).mean
    return out


# ----- the authors' models as the reference level of the convergence gate -------------------------

LEVELS_MODULE = Path(__file__).resolve().parent / "authors_levels.py"


def convergence_levels(root: Path, targets=TARGETS) -> dict:
    """{target: {w_R: the published model's convergence evidence}} (``fpbench.core.convergence``, the same
    code and seed as every case's), float32 as the runner evaluates."""
    from ..core.convergence import GATE_POINTS, score_profile
    from ..core.sde import make_sde
    from ..core.targets import make_target
    from ..run.evaluate import log_fp_residual_estimate
    from ..run.suite import level_case

    sde, out = make_sde("ou"), {}
    for target_name in targets:
        target = make_target(target_name)
        for w_r in W_R:
            model = load_checkpoint(checkpoint_path(root, target_name, w_r), dtype=torch.float32)
            profile = score_profile(lambda x, t, m=model: m.score(x, t), target, sde, GATE_POINTS,
                                    streams.generator(0, streams.CONVERGENCE))
            level = {k: profile[k] for k in ("ratio_min_late", "ratio_max_late", "rel_error", "rel_error_early")}
            level["log_fp_residual"] = log_fp_residual_estimate(level_case(target_name, w_r), model, sde, target.dim)
            out.setdefault(target_name, {})[w_r] = level
    return out





def write_levels_module(levels: dict, path: Path = LEVELS_MODULE) -> Path:
    """``fpbench/analysis/authors_levels.py``: the measured levels as a module (regenerated by
    ``fpbench reference levels``; never edited by hand)."""
    lines = ['"""The authors\' 12 published models measured by ``fpbench.core.convergence`` (score ratio over the late',
             "gate times, mean relative score error, and over t <= 0.05 T) and R~ as the paper suite's cases at its",
             "``converged`` scale measure it (``run.suite.level_case``): the reference levels of the gate's tiers.",
             "", "Generated by ``fpbench reference levels`` from the published checkpoints; do not edit.", '"""',
             "", "LEVELS = {"]
    for target, by_w in levels.items():
        lines.append(f"    {target!r}: {{")
        for w_r, v in by_w.items():
            lines += [f"        {w_r!r}: {{", *(f"            {k!r}: {float(f'{x:.6g}')!r}," for k, x in v.items()),
                      "        },"]
        lines.append("    },")
    lines += ["}", ""]
    path.write_text("\n".join(lines))
    return path
