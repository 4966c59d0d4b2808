"""Mutations bench/fuzz.py found crashing the build once; each is now a located error."""
from aotflax import nn, aot
import jax.numpy as jnp


class Block(nn.Module):
    def apply(self, x):
        return nn.Dense(x, 4)


class NoApply(nn.Module):  # E: AOT321 has no apply method
    def jnp(self, x):
        return x


class Net(nn.Module):
    def apply(self, x, images):
        a = nn.Conv(images, 4, (3, 3), padding=[(1, 1), (1, "a")])  # E: AOT203 pairs of ints
        b = nn.max_pool(images, (2, 2), padding=[(0, 1), 2])  # E: AOT203 pairs of ints
        c = jnp.swapaxes(x, (), 1)  # E: AOT203 jnp.swapaxes
        d = Block(x, name="dec{oder")  # E: AOT310 invalid module name
        e = NoApply(x)
        f = nn.Dense(x[:, :0], 4)  # E: AOT210 zero-size shape (0, 4)
        g = jnp.take(x, jnp.where(x > 0, 0.5, 1), axis=0)  # E: AOT211 indices must be integers
        h = jnp.take_along_axis(x, x > 0, axis=1)  # E: AOT211 indices must be integers
        return x


aot.target("net", Net, x=aot.f32[2, 8], images=aot.f32[2, 8, 8, 3])
aot.target("huge", Net, x=aot.f32[2, 2**64], images=aot.f32[2, 8, 8, 3])  # E: AOT410 too large
aot.target("plat", Net, x=aot.f32[2, 8], platforms=aot.i32[4, 10])  # E: AOT408 platforms=

