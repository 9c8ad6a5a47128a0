"""fpbench: checks and measures the claims of Deveney et al., "Closing the ODE-SDE gap in
score-based diffusion models through the Fokker-Planck equation", against exact oracles."""

__version__ = "0.1.0"
