from aotflax import nn, aot
import jax.numpy as jnp


def vector_init(key, shape, dtype):  # E: AOT215 returns f32[8] for a variable declared f32[2, 8]
    return jnp.ones((8,), dtype)


class Scale(nn.Module):
    def apply(self, x):
        return x * self.param("scale", (2, 8), vector_init)


aot.target("scale", Scale, x=aot.f32[2, 8])
