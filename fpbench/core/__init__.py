"""The math: SDEs, targets with exact densities, models, operators, residuals (eqs. 20, 32), losses,
samplers, W2 distances, jets, the oracle self-check and convergence evidence."""
