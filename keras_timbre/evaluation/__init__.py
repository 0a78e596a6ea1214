"""Evaluation: held-out metrics, reconstruction and interpolation, the ablation."""
