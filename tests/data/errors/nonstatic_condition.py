from aotflax import nn, aot
import jax.numpy as jnp


class Net(nn.Module):
    def apply(self, x):
        if jnp.sum(x) > 0:  # E: AOT335 conditions must be static
            x = nn.relu(x)
        y = x if x.mean() > 0 else -x  # E: AOT335 conditions must be static
        return nn.Dense(y, 4)


aot.target("net", Net, x=aot.f32[2, 8])
