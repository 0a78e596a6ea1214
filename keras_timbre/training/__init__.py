"""Training: the run directory, `train()`, callbacks, distribution."""
