from aotflax import nn, aot
import jax.numpy as jnp


class Net(nn.Module):
    def apply(self, x, w):
        y = x @ w  # E: AOT210 matmul
        return jnp.matmul(w, w)  # E: AOT210 matmul


aot.target("net", Net, x=aot.f32[2, 8], w=aot.f32[4, 3])
