from aotflax import nn, aot
import jax.numpy as jnp


class Net(nn.Module):
    def apply(self, tokens, x):
        h = nn.Dense(tokens, 4)  # E: AOT201 expects a floating input, got i32[2, 8]
        e = nn.Embed(x, 10, 4)  # E: AOT201 integer indices, got f32[2, 8]
        return nn.Dense(x, 4, dtype=jnp.flot32)  # E: AOT346 jnp.flot32


aot.target("net", Net, tokens=aot.i32[2, 8], x=aot.f32[2, 8])
