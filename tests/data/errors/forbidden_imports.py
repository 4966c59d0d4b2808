"""Model files are data: a target may use only the DSL's modules (each bad use is reported)."""
from aotflax import nn, aot
import os
from subprocess import run
import jax.numpy as jnp
from . import helpers  # E: AOT104 no model file 'helpers'


class MLP(nn.Module):
    def apply(self, x):
        root = os.getcwd()  # E: AOT104 'os.getcwd' cannot be called
        run(["ls"])  # E: AOT104 'run' cannot be called
        return nn.Dense(helpers.scale(x), 4)


aot.target("mlp", MLP, x=aot.f32[2, 8])
