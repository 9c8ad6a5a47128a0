"""The authors' artefacts: safe loading, their network reproduced, Tables 1-3 from their histograms."""

import io
import pickle
import zipfile

import pytest
import torch

from fpbench.analysis.paper_values import TARGETS, W_R
from fpbench.analysis.reference import (
    ReferenceError,
    checkpoint_path,
    load_checkpoint,
    recompute_tables,
    reference_dir,
)

try:
    ROOT = reference_dir()
except ReferenceError as err:
    ROOT, REASON = None, str(err)
needs_artefacts = pytest.mark.skipif(ROOT is None,
                                     reason="the authors' artefacts are absent (../shared/paper/reference)")


@needs_artefacts
@pytest.mark.parametrize("target", [pytest.param(t, marks=[] if t == "checker" else pytest.mark.slow) for t in TARGETS])
def test_all_36_cells_of_tables_1_to_3_equal_the_paper_to_the_printed_digits(target):
    """checker's 12 cells by default; blob's and circles2's with ``pytest -m slow`` (exact OT on
    4,096-node grids: minutes per target)."""
    cells = recompute_tables(ROOT, targets=(target,))  # 12 cells per target, 36 over the three
    assert len(cells) == 12
    wrong = [(c.table, c.target, c.w_r, c.printed, f"{c.paper:.6f}") for c in cells if not c.matches]
    assert wrong == []


def _raw_forward(path, x, t):
    """The authors' network written out from the raw tensors of the zip archive: (t, x, y) ->
    three Softplus(beta = 100, threshold = 20) layers -> Linear. Independent of fpbench's model."""
    with torch.serialization.safe_globals(__import__("fpbench.analysis.reference", fromlist=["ALLOWED"]).ALLOWED):
        net = torch.load(path, weights_only=True, map_location="cpu")
    w = {name: (m.weight.detach().double(), m.bias.detach().double()) for name, m in net._modules.items()
         if isinstance(m, torch.nn.Linear)}

    def softplus(z):
        return torch.where(100 * z > 20, z, torch.log1p(torch.exp(100 * z)) / 100)

    h = torch.cat([t[:, None], x], -1)
    for name in ("input", "hidden1", "hidden2"):
        h = softplus(h @ w[name][0].T + w[name][1])
    return (h @ w["output"][0].T + w["output"][1]).squeeze(-1)


@needs_artefacts
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("w_r", W_R)
def test_loaded_checkpoint_reproduces_the_authors_forward_pass(target, w_r):
    path = checkpoint_path(ROOT, target, w_r)
    model = load_checkpoint(path)
    g = torch.Generator().manual_seed(0)
    x = 7 * torch.rand(500, 2, generator=g, dtype=torch.float64) - 3.5
    t = 10 * torch.rand(500, generator=g, dtype=torch.float64)
    torch.testing.assert_close(model.potential(x, t), _raw_forward(path, x, t), rtol=0, atol=1e-10)


def _tampered(tmp_path, payload_global: bytes):
    """A torch zip checkpoint whose data.pkl references another global (as an attack would)."""
    src = checkpoint_path(ROOT, "blob", 0.0)
    out = tmp_path / "tampered"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item.endswith("data.pkl"):
                data = data.replace(b"cmodels\nNet\n", payload_global, 1)
            zout.writestr(item, data)
    return out


@needs_artefacts
def test_a_pickle_referencing_other_code_is_refused_without_unsafe_advice(tmp_path):
    path = _tampered(tmp_path, b"cos\nsystem\n")
    refused = r"refusing checkpoint .*names code outside the allowlist \(os.system\)"
    with pytest.raises(ReferenceError, match=refused) as err:
        load_checkpoint(path)
    assert "weights_only" not in str(err.value)  # torch's advice (weights_only=False) would run the file's code


@needs_artefacts
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_a_truncated_checkpoint_is_refused_cleanly(tmp_path, keep):
    data = checkpoint_path(ROOT, "blob", 0.0).read_bytes()
    path = tmp_path / "truncated"
    path.write_bytes(data[:int(keep * len(data))])
    with pytest.raises(ReferenceError, match="refusing checkpoint .*truncated or not a torch checkpoint") as err:
        load_checkpoint(path)
    assert "weights_only" not in str(err.value)


def test_a_non_checkpoint_file_is_refused(tmp_path):
    path = tmp_path / "garbage"
    buf = io.BytesIO()
    pickle.dump({"not": "a network"}, buf)
    path.write_bytes(buf.getvalue())
    with pytest.raises(ReferenceError, match="refusing checkpoint"):
        load_checkpoint(path)


def test_an_explicit_directory_that_does_not_exist_is_a_clear_error(tmp_path):
    with pytest.raises(ReferenceError, match="reference artefacts not found at"):
        reference_dir(str(tmp_path / "nowhere"))


def _authors_histogram(points):
    """Binned as the authors' code bins (REFERENCE.md), written out independently of fpbench:
    nodes from ``np.meshgrid(lin, lin)`` with its default 'xy' indexing, flattened row by row, each
    point counted at its nearest node by brute force."""
    import numpy as np

    lin = np.linspace(-3.5, 3.5, 64)
    xx, yy = np.meshgrid(lin, lin)
    nodes = np.stack([xx.ravel(), yy.ravel()], 1)
    nearest = ((points[:, None, :] - nodes[None]) ** 2).sum(-1).argmin(1)
    return np.bincount(nearest, minlength=4096).astype(float)


def test_published_histograms_are_read_in_the_authors_axis_order(tmp_path):
    """Points shifted along x only: read back from a published-style file, their histogram must be
    fpbench's own histogram of the same points, and its mass must sit at x = 1.5, not at y = 1.5."""
    import numpy as np

    from fpbench.analysis.reference import histogram
    from fpbench.core.metrics import PAPER_GRID, grid_histogram, grid_w2_from_weights

    points = np.random.default_rng(0).normal(0, 0.2, (3000, 2)) + [1.5, 0.0]
    (tmp_path / "precomputed_dists").mkdir()
    np.save(tmp_path / "precomputed_dists" / "weights_truth_64_3000000_blob.npy", _authors_histogram(points))
    read = histogram(tmp_path, "truth", "blob")
    mean = (read[:, None] * PAPER_GRID.nodes()).sum(0) / read.sum()
    assert abs(mean[0] - 1.5) < 0.05 and abs(mean[1]) < 0.05
    assert np.array_equal(read, grid_histogram(points))
    assert grid_w2_from_weights(read, grid_histogram(points)) < 1e-12


@needs_artefacts
def test_the_gates_reference_levels_are_the_published_models_measured_now():
    """fpbench/analysis/authors_levels.py is what `fpbench reference levels` measures (blob's four models here)."""
    from fpbench.analysis.authors_levels import LEVELS
    from fpbench.analysis.reference import convergence_levels

    measured = convergence_levels(ROOT, targets=("blob",))["blob"]
    for w_r, values in measured.items():
        assert values == pytest.approx(LEVELS["blob"][w_r], rel=1e-4), w_r
