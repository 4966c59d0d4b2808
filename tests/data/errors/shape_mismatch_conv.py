from aotflax import nn, aot
import jax.numpy as jnp


class Net(nn.Module):
    def apply(self, x):
        y = nn.Conv(x, 8, (3, 3))  # E: AOT201 rank 4
        x4 = x[:, :, :, None]
        z = nn.Conv(x4, 6, (3, 3), feature_group_count=4)  # E: AOT201 divisible
        conv = nn.Conv.shared(features=8, kernel_size=(3, 3), name="conv")
        a = conv(x4)
        b = conv(jnp.concatenate([x4, x4], axis=-1))  # E: AOT312 conv/kernel
        return nn.Conv(x4, 8, (3, 3), strides=(1, 1, 1))  # E: AOT203 'strides' must have 2 entries


aot.target("net", Net, x=aot.f32[2, 8, 8])
