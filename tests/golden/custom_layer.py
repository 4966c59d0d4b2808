"""Golden: self.param with a user initializer, a shared Dense in a loop."""
import jax

from aotflax import aot, nn


def uniform_init(key, shape, dtype):
    return jax.random.uniform(key, shape, dtype, -0.1, 0.1)


class Affine(nn.Module):
    def apply(self, x):
        features = x.shape[-1]
        scale = self.param("scale", (features,), nn.initializers.ones)
        shift = self.param("shift", (features,), uniform_init)
        return x * scale.reshape((1, -1)) + shift.reshape((1, -1))


class Tied(nn.Module):
    def apply(self, x, depth: int = 3):
        dense = nn.Dense.shared(features=x.shape[-1], name="tied")
        for _ in range(depth):
            x = nn.tanh(dense(x))
        return Affine(x, name="affine")


aot.target("tied", Tied, x=aot.f32[2, 4])
