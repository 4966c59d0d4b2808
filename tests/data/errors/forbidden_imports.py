"""Model files are data: only the DSL's modules may be imported (every bad import is reported)."""
from aotflax import nn, aot
import os  # E: AOT104 'os' is not allowed
from subprocess import run  # E: AOT104 'subprocess' is not allowed
import jax.numpy as jnp
from . import helpers  # E: AOT104 relative imports


class MLP(nn.Module):
    def apply(self, x):
        return nn.Dense(x, 4)


aot.target("mlp", MLP, x=aot.f32[2, 8])
