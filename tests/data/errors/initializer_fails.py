"""A user initializer is interpreted like any model code: its mistakes are located in the model."""
from aotflax import nn, aot
import jax
import jax.numpy as jnp


def scaled_normal(key, shape, dtype, scale=(0.1,)):
    return scale * jax.random.normal(key, shape, dtype)  # E: AOT344 unsupported operand types for *: tuple


class Net(nn.Module):
    def apply(self, x):
        return nn.Dense(x, 4, kernel_init=scaled_normal)


aot.target("net", Net, x=aot.f32[2, 8])
