"""Golden: reshape, transpose, einsum, concatenate and indexing keep DSL names."""
import jax
import jax.numpy as jnp

from aotflax import aot, nn


class Mixer(nn.Module):
    def apply(self, x, heads: int = 2):
        batch, length, features = x.shape
        q = x.reshape((batch, length, heads, features // heads))
        k = jnp.transpose(q, (0, 2, 1, 3))
        scores = jnp.einsum("bqhd,bhkd->bhqk", q, k) / jnp.sqrt(features // heads)
        weights = jax.nn.softmax(scores, axis=-1)
        first = weights[:, 0, :, :]
        both = jnp.concatenate([first, weights[:, -1]], axis=-1)
        return jnp.where(both > 0.5, both, 0.0).sum(axis=-1)


aot.target("mixer", Mixer, x=aot.f32[2, 3, 4])
