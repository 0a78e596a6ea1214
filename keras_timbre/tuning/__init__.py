"""Tuning: KerasTuner searches over beta and the loss weights."""
