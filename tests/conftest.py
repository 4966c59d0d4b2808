"""Test configuration: make JAX strict, as Equinox's test suite does.

Rank promotion raises, so a generated model that silently broadcasts
mismatched ranks fails its tests instead of computing something else.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
