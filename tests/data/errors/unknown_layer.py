from aotflax import nn, aot
import jax.numpy as jnp


class MLP(nn.Module):
    def apply(self, x):
        x = nn.Dense(x, 16)
        x = nn.Dens(x, 4)  # E: AOT346 nn.Dens
        return jnp.meen(x, axis=-1)  # E: AOT346 jnp.meen


aot.target("mlp", MLP, x=aot.f32[2, 8])
