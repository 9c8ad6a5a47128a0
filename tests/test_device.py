"""The same computations on the test device as on the CPU, in float64: the forward-mode jets, the
log-FP residual, the samplers and ensemble training. The device is ``$FPBENCH_TEST_DEVICE`` (default
``cpu``, where these check the device plumbing); ``scripts/gpu_check.sh`` runs them with ``cuda``."""

import os

import pytest
import torch

from fpbench.core import metrics as mx
from fpbench.core import operators as ops
from fpbench.core.jet import BatchedMLP
from fpbench.core.models import PotentialMLP
from fpbench.core.residuals import PAPER_BOX, log_fp_residual_mc
from fpbench.core.samplers import refined_grid, sample_pair
from fpbench.core.sde import make_sde
from fpbench.core.targets import make_target
from fpbench.train.ensemble import train_ensemble
from fpbench.train.methods import make_method

DEVICE = torch.device(os.environ.get("FPBENCH_TEST_DEVICE", "cpu"))
pytestmark = pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(),
                                reason="FPBENCH_TEST_DEVICE=cuda but no CUDA device")


@pytest.fixture(autouse=True)
def _no_tf32():
    if DEVICE.type == "cuda":  # as fpbench's runs on CUDA: TF32 would round the matmuls' inputs
        torch.backends.cuda.matmul.allow_tf32 = False


def _model(seed=0):
    torch.manual_seed(seed)
    return PotentialMLP(width=16, depth=3, beta=100.0).double()


def test_jets_on_the_device_equal_autograd_on_the_cpu():
    model = _model()
    g = torch.Generator().manual_seed(1)
    x, t = 2 * torch.randn(200, 2, generator=g, dtype=torch.float64), 10 * torch.rand(200, generator=g,
                                                                                    dtype=torch.float64)
    on_device = BatchedMLP([_model().to(DEVICE)]).potential_derivatives(x[None].to(DEVICE), t[None].to(DEVICE))
    for mine, theirs in zip(on_device, ops.derivatives(model.potential, x, t, create_graph=False)):
        torch.testing.assert_close(mine[0].cpu(), theirs, rtol=1e-10, atol=1e-10)


def test_the_log_fp_residual_on_the_device_equals_the_cpu():
    sde, model = make_sde("ou"), _model()
    values = [log_fp_residual_mc(m.potential, sde, 2, 2000, PAPER_BOX, 1e-5, torch.Generator().manual_seed(3),
                                 torch.float64, device) for m, device in ((model, None),
                                                                          (_model().to(DEVICE), DEVICE))]
    assert abs(float(values[1]) - float(values[0])) <= 1e-10 * abs(float(values[0]))


def test_samples_on_the_device_match_the_cpu_within_rounding_and_the_floor():
    """The same prior and noise draws (generated on the CPU), so the particles agree to rounding; the
    grid W2^2 between the two sample sets is far below the noise floor at this n."""
    sde, target = make_sde("ou"), make_target("blob")
    exact = lambda x, t: target.score(x, t, sde)
    ts = refined_grid(sde.T, 40, 10)
    cpu = sample_pair(exact, sde, 3000, 2, ts, seed=5, dtype=torch.float64)
    dev = sample_pair(exact, sde, 3000, 2, ts, seed=5, dtype=torch.float64, device=DEVICE)
    for a, b in zip(cpu, dev):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)
    floor = mx.grid_noise_floor(lambda n, g: target.sample(n, g), 3000, 2, seed=0).mean
    assert mx.grid_w2_from_weights(mx.grid_histogram(cpu[0]), mx.grid_histogram(dev[0])) < 0.1 * floor


def test_ensemble_training_on_the_device_equals_the_cpu():
    cfg = {"iterations": 3, "lr_stages": [[1e-3, 1.0]], "dsm_batch": 128, "time_law": "beta12", "t_eps": 1e-5,
           "dsm_weighting": "likelihood", "residual_points": 64, "residual_t0": 1e-5, "box": [-3.5, 3.5],
           "dtype": "float64", "log_every": 1, "checkpoint_every": 10}
    sde, targets = make_sde("ou"), [make_target("blob"), make_target("checker")]
    methods = [make_method("fp", w_r=0.0), make_method("fp", w_r=1.0)]
    runs = []
    for device in (None, DEVICE):
        models = [_model(0).to(device), _model(1).to(device)]
        runs.append((models, train_ensemble(models, methods, targets, sde, cfg, [0, 1], device=device)))
    (cpu_models, cpu_res), (dev_models, dev_res) = runs
    for a, b in zip(cpu_res, dev_res):
        assert [h["loss"] for h in a.history] == pytest.approx([h["loss"] for h in b.history], rel=1e-9)
    for a, b in zip(cpu_models, dev_models):
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p, q.cpu(), rtol=1e-8, atol=1e-10)
