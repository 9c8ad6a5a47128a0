"""Training: methods (named loss terms), the per-model loop, ensembles on jets, and the CPU process
settings they train under."""
