"""The model variants: the paper's four, and the pitch-conditioned hierarchical one beyond it."""

from __future__ import annotations

from typing import Any

# The paper's variants: name -> (use_skips, mel-gradient loss on). Everything else (filters, latent
# size, beta, optimiser, seed) is shared so the variants differ in one thing.
VARIANTS = {
    "baseline": (False, False),
    "skip": (True, False),
    "grad": (False, True),
    "skip+grad": (True, True),
}
# Beyond the paper: latent groups instead of skips, decoder told the note's pitch and velocity
# (`keras_timbre.models.hierarchical_vae`). Its inputs are dicts with "pitch" and "velocity".
CONDITIONED_VARIANTS = ("hierarchical",)
ALL_VARIANTS = (*VARIANTS, *CONDITIONED_VARIANTS)

DEFAULT_VARIANT = "skip+grad"


def check_variant(variant: str) -> str:
    """Returns `variant` or raises a ValueError listing the known ones.

    Example:
    >>> check_variant("skip+grad")
    'skip+grad'
    """
    if variant not in ALL_VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; choose one of {', '.join(ALL_VARIANTS)}")
    return variant


def is_conditioned(variant: str) -> bool:
    """Whether `variant` takes the note's pitch and velocity as inputs.

    Example:
    >>> is_conditioned("hierarchical"), is_conditioned("skip+grad")
    (True, False)
    """
    return check_variant(variant) in CONDITIONED_VARIANTS


def build_model(variant: str, **overrides: Any):
    """The model of `variant`: `TimbreVAE.from_variant` or `HierarchicalTimbreVAE.from_variant`.

    Example:
    >>> build_model("hierarchical", input_shape=(32, 64, 1), filters=(4, 8)).variant
    'hierarchical'
    """
    if is_conditioned(variant):
        from keras_timbre.models.hierarchical_vae import HierarchicalTimbreVAE

        return HierarchicalTimbreVAE.from_variant(variant, **overrides)
    from keras_timbre.models.timbre_vae import TimbreVAE

    return TimbreVAE.from_variant(variant, **overrides)
