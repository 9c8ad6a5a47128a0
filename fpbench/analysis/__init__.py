"""Deciding claims: statistics, the claims C1-C7 and their gates, method comparisons, the paper's
numbers and the authors' artefacts."""
