"""The model variants by name: the paper's four (`TimbreVAE`) and the pitch-conditioned hierarchical one.

Each name maps to the model class that builds it; what a variant takes (its
`INPUT_KEYS`) is asked of that class, never decided here by name.
"""

from __future__ import annotations

from typing import Any

from keras_timbre.models.family import TimbreModel
from keras_timbre.models.hierarchical_vae import HierarchicalTimbreVAE
from keras_timbre.models.timbre_vae import VARIANTS, TimbreVAE

VARIANT_CLASSES: dict[str, type[TimbreModel]] = {
    **{name: TimbreVAE for name in VARIANTS},
    "hierarchical": HierarchicalTimbreVAE,
}
ALL_VARIANTS = tuple(VARIANT_CLASSES)
# Variants whose inputs carry each note's pitch and velocity.
CONDITIONED_VARIANTS = tuple(name for name, cls in VARIANT_CLASSES.items() if "pitch" in cls.INPUT_KEYS)

DEFAULT_VARIANT = "skip+grad"
__all__ = ["VARIANTS", "VARIANT_CLASSES", "ALL_VARIANTS", "CONDITIONED_VARIANTS", "DEFAULT_VARIANT"]


def check_variant(variant: str) -> str:
    """Returns `variant` or raises a ValueError listing the known ones.

    Example:
    >>> check_variant("skip+grad")
    'skip+grad'
    """
    if variant not in VARIANT_CLASSES:
        raise ValueError(f"Unknown variant {variant!r}; choose one of {', '.join(ALL_VARIANTS)}")
    return variant


def model_class(variant: str) -> type[TimbreModel]:
    """The class that builds `variant`.

    Example:
    >>> model_class("hierarchical").INPUT_KEYS
    ('log_mel', 'pitch', 'velocity')
    """
    return VARIANT_CLASSES[check_variant(variant)]


def is_conditioned(variant: str) -> bool:
    """Whether `variant`'s model takes the note's pitch and velocity (its class's `INPUT_KEYS`).

    Example:
    >>> is_conditioned("hierarchical"), is_conditioned("skip+grad")
    (True, False)
    """
    return "pitch" in model_class(variant).INPUT_KEYS


def build_model(variant: str, **overrides: Any) -> TimbreModel:
    """The model of `variant`, built by its class's `from_variant`.

    Example:
    >>> build_model("hierarchical", input_shape=(32, 64, 1), filters=(4, 8)).variant
    'hierarchical'
    """
    return model_class(variant).from_variant(variant, **overrides)
