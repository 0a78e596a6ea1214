"""Synthesis: sound from a trained run — reconstruct, interpolate, synthesize, transfer — and its figures."""
