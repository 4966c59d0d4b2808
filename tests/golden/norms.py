"""Golden: LayerNorm in float32 and bfloat16, BatchNorm with running statistics."""
import jax
import jax.numpy as jnp

from aotflax import aot, nn


class Norms(nn.Module):
    def apply(self, x, train: bool = True):
        x = nn.LayerNorm(x)
        x = nn.LayerNorm(x, dtype=jnp.bfloat16, bias=False)
        return nn.BatchNorm(x, use_running_average=not train, momentum=0.9)


aot.target("norms", Norms, x=aot.f32[2, 6])
