"""An fpbench training method written outside the package: the paper's log-FP regulariser with its
weight ramped up from 0, so that the network learns the score by DSM before the residual can pull
it toward the trivial log-FP solution u = c(t) (zero residual, zero score; reports/paper-quick.md).

Benchmark it against the baseline on the paper's targets, from the repository root:

    fpbench compare examples/ramped_fp.py:RampedFP --scale smoke

A method is a subclass of ``fpbench.train.methods.Method``: named loss terms (``dsm``, ``log_fp``,
``score_fp``) with weights, here on a schedule (``weights_at``). Everything else (training loop,
ensembles, checkpoints, sampling, metrics, reports) is fpbench's: a method built from fpbench's own
terms trains with the others of its shape as one ensemble; one that overrides ``loss`` or
``loss_terms`` trains by the per-model loop, which computes it as written.
"""

from fpbench import Method


class RampedFP(Method):
    """L_DSM + w(k) R~ with w(k) = w_r * min(1, k / (ramp * K)) at step k of K."""

    name = "ramped_fp"
    model_kind = "potential"  # R~ (eq. 20) needs a potential model

    def __init__(self, w_r: float = 1.0, ramp: float = 0.5):
        super().__init__(dsm=1.0, log_fp=w_r)
        self.ramp = ramp

    def weights_at(self, iteration: int, iterations: int) -> dict[str, float]:
        progress = min(1.0, iteration / max(1.0, self.ramp * iterations))
        return {**self.weights, "log_fp": progress * self.weights["log_fp"]}
