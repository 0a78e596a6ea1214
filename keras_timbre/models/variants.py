"""The paper's four variants: which of skips and the mel-gradient loss each uses."""

from __future__ import annotations

# name -> (use_skips, mel-gradient loss on). Everything else (filters, latent
# size, beta, optimiser, seed) is shared so the variants differ in one thing.
VARIANTS = {
    "baseline": (False, False),
    "skip": (True, False),
    "grad": (False, True),
    "skip+grad": (True, True),
}

DEFAULT_VARIANT = "skip+grad"


def check_variant(variant: str) -> str:
    """Returns `variant` or raises a ValueError listing the known ones.

    Example:
    >>> check_variant("skip+grad")
    'skip+grad'
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return variant
