"""Several independent mistakes in one file: every one is reported, in source order."""
from aotflax import nn, aot
import jax.numpy as jnp

WIDTHS = (16, 8)


class Block(nn.Module):
    def apply(self, x, features: int):
        y = nn.Dense(x, features, use_bias=False)  # E: AOT302 'use_bias'
        return nn.relu(y)


class Net(nn.Module):
    def apply(self, x):
        if x.ndim > 2:
            raise ValueError("expected a matrix")
        h = x
        for w in WIDTHS:
            h = Block(h, w)
        z = jnp.reshape(x, (3, 5))  # E: AOT210 cannot reshape
        return nn.Dense(x, undefined_width)  # E: AOT340 'undefined_width'


class NotAModule:  # E: AOT320 plain Python class
    def apply(self, x):
        return x


aot.target("net", Net, x=aot.f32[2, 8])
aot.target("plain", NotAModule, x=aot.f32[2, 8])
aot.target("net2", Net, x=aot.f32[2, 8], platforms=("gpu",))  # E: AOT408 unknown platform gpu
