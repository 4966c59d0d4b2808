"""A user initializer is emitted verbatim and traced by init: its failure is located in the model."""
from aotflax import nn, aot
import jax
import jax.numpy as jnp


def scaled_normal(key, shape, dtype, scale=(0.1,)):
    return scale * jax.random.normal(key, shape, dtype)  # E: AOT215 fails when init traces it


class Net(nn.Module):
    def apply(self, x):
        return nn.Dense(x, 4, kernel_init=scaled_normal)


aot.target("net", Net, x=aot.f32[2, 8])
