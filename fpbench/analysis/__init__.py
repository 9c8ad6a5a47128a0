"""Deciding claims: statistics, the paper's claims, fpbench's checks and their gates, method comparisons, the paper's
numbers and the authors' artefacts."""
