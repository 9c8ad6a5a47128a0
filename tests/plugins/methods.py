"""Methods a user might write, for the plugin tests."""

import torch

from fpbench import Method


class ExplodingMethod(Method):
    """A user method whose loss turns NaN after a few iterations."""

    name = "exploding"

    def __init__(self, after: int = 3):
        super().__init__(dsm=1.0)
        self.after, self.calls = after, 0

    def loss_terms(self, model, ctx):
        self.calls += 1
        terms = super().loss_terms(model, ctx)
        if self.calls > self.after:
            terms["dsm"] = terms["dsm"] * torch.tensor(float("nan"))
        return terms


class HalfDSM(Method):
    """A legitimate user method: DSM with an extra weight, to show plugins run unchanged."""

    name = "half_dsm"

    def __init__(self, scale: float = 0.5):
        super().__init__(dsm=scale)


class InterruptedFP(Method):
    """The paper's method, interrupted (as by Ctrl-C) at its ``at``-th loss evaluation."""

    name = "interrupted_fp"

    def __init__(self, w_r: float = 1.0, at: int = 9):
        super().__init__(dsm=1.0, log_fp=w_r)
        self.at, self.calls = at, 0

    def loss_terms(self, model, ctx):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return super().loss_terms(model, ctx)


class FragileMethod(Method):
    """DSM that raises (``fail = 1``) or returns a vector instead of a scalar (``fail = 2``)."""

    name = "fragile"

    def __init__(self, fail: int = 0):
        super().__init__(dsm=1.0)
        self.fail = fail

    def loss(self, model, ctx):
        loss, terms = super().loss(model, ctx)
        if self.fail == 1:
            raise RuntimeError("the user's loss broke")
        return (loss.expand(3) if self.fail == 2 else loss), terms
