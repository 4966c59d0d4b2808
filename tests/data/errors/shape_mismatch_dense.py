from aotflax import nn, aot
import jax.numpy as jnp


class Net(nn.Module):
    def apply(self, x):
        dense = nn.Dense.shared(features=8, name="proj")
        a = dense(x)
        b = dense(x[:, :4])  # E: AOT312 proj/kernel
        s = nn.Dense(jnp.sum(x), 4)  # E: AOT201 at least a 1-D input
        return a


aot.target("net", Net, x=aot.f32[2, 8])
