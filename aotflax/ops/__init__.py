"""The operation table (see `registry.py`); importing this package fills it."""

# Importing the rule modules fills the table (registration side effects).
from . import (  # noqa: F401
    arrays,
    attention,
    convolution,
    elementwise,
    host,
    layers,
    linear,
    normalization,
    operators,
    recurrent,
    slicing,
    special,
    spectral,
    stochastic,
)
from .registry import REGISTRY, CallError, Entry, Signature

__all__ = ["REGISTRY", "CallError", "Entry", "Signature"]
