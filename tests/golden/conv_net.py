"""Golden: partial Conv inside apply, a nested module specialized twice, pooling."""
import jax
import jax.numpy as jnp

from aotflax import aot, nn


class Block(nn.Module):
    def apply(self, x, features: int, pool: str = "max"):
        conv = nn.Conv.partial(kernel_size=(3, 3), bias=False)
        x = nn.relu(conv(x, features, name="conv"))
        if pool == "max":
            return nn.max_pool(x, (2, 2), strides=(2, 2))
        return nn.avg_pool(x, (2, 2), strides=(2, 2), padding="SAME")


class Net(nn.Module):
    def apply(self, x, widths=(4, 8)):
        x = Block(x, widths[0])
        x = Block(x, widths[1], pool="avg")
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(x, 2)


aot.target("net", Net, x=aot.f32[2, 8, 8, 1])
