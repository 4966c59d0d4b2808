"""The operation table (see `registry.py`); importing this package fills it."""

from . import arrays, layers, normalization, operators  # noqa: F401  (registration side effects)
from .registry import REGISTRY, CallError, Entry, Signature

__all__ = ["REGISTRY", "CallError", "Entry", "Signature"]
