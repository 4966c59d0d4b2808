"""Flax Linen twins of the model zoo in `models/`, for benchmarks (same parameter trees).

Each class here has exactly the parameter tree of the generated target it is
compared with, so one parameter file feeds both.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    """models/mlp.py: MLP."""

    hidden: Sequence[int] = (128, 64)
    num_classes: int = 10

    @nn.compact
    def __call__(self, x):
        x = x.reshape((x.shape[0], -1))
        for i, h in enumerate(self.hidden):
            x = nn.relu(nn.Dense(h, name=f"hidden_{i}")(x))
        return nn.log_softmax(nn.Dense(self.num_classes)(x))


class _Scale(nn.Module):
    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],))
        return x * scale.reshape((1,) * (x.ndim - 1) + (-1,))


class _ConvBlock(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(self.features, (3, 3), padding="SAME", name="conv")(x))
        return nn.max_pool(x, (2, 2), strides=(2, 2))


class _TiedMLP(nn.Module):
    depth: int = 2

    @nn.compact
    def __call__(self, x):
        dense = nn.Dense(x.shape[-1], name="tied")
        for _ in range(self.depth):
            x = x + nn.relu(dense(x))
        return x


class CNN(nn.Module):
    """models/cnn.py: CNN."""

    widths: Sequence[int] = (32, 64)
    hidden: int = 128
    num_classes: int = 10

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(self.widths[0], (3, 3), name="conv1")(x))
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        for i, w in enumerate(self.widths[1:]):
            x = _ConvBlock(w, name=f"block{i + 1}")(x)
        x = _Scale(name="scale")(x)
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(self.hidden)(x))
        x = _TiedMLP(2, name="TiedMLP_0")(x)
        return nn.log_softmax(nn.Dense(self.num_classes)(x))


def apply_fn(model: Any):
    """`(variables, x) -> outputs` for jitting."""
    return jax.jit(lambda v, x: model.apply(v, x))


__all__ = ["MLP", "CNN", "apply_fn", "jnp"]
