"""An MNIST-style convolutional network: conv blocks, a weight-tied MLP head."""
import jax
import jax.numpy as jnp

from aotflax import aot, nn

#: Hyperparameters shared by the targets below.
CONFIG = {"widths": (32, 64), "hidden": 128, "num_classes": 10}
POOL = (2, 2)


def small_normal(key, shape, dtype):
    """A user initializer: emitted into the generated file, run only by `init`."""
    return 0.01 * jax.random.normal(key, shape, dtype)


def pooled(size: int, times: int) -> int:
    """Spatial size after `times` 2x2 poolings (a helper the build evaluates)."""
    for _ in range(times):
        size = size // 2
    return size


class Scale(nn.Module):
    """A custom layer: a learned per-channel scale."""

    def apply(self, x):
        scale = self.param("scale", (x.shape[-1],), nn.initializers.ones)
        # (1, ..., 1, C): generated code must not rely on rank promotion
        scale = scale.reshape((1,) * (x.ndim - 1) + (-1,))
        return x * scale


class ConvBlock(nn.Module):
    """Conv -> relu -> pool."""

    def apply(self, x, features: int, pool: str = "avg"):
        conv = nn.Conv.partial(kernel_size=(3, 3), padding="SAME")
        x = conv(x, features, name="conv")
        x = nn.relu(x)
        if pool == "max":
            return nn.max_pool(x, POOL, strides=POOL)
        return nn.avg_pool(x, POOL, strides=POOL)


class TiedMLP(nn.Module):
    """A residual MLP whose layers all share one Dense (weight tying)."""

    def apply(self, x, depth: int = 2):
        dense = nn.Dense.shared(features=x.shape[-1], name="tied")
        for _ in range(depth):
            x = x + nn.relu(dense(x))
        return x


class CNN(nn.Module):
    def apply(self, x, widths=CONFIG["widths"], hidden: int = CONFIG["hidden"],
              num_classes: int = CONFIG["num_classes"]):
        batch, height, width, _ = x.shape
        conv = nn.Conv.partial(kernel_size=(3, 3), bias=True)
        x = conv(x, widths[0], name="conv1")
        x = nn.relu(x)
        x = nn.avg_pool(x, POOL, strides=POOL)
        for i, w in enumerate(widths[1:]):
            x = ConvBlock(x, w, pool="max", name=f"block{i + 1}")
        x = Scale(x, name="scale")
        side = pooled(height, len(widths))
        x = jnp.reshape(x, (batch, side * pooled(width, len(widths)) * widths[-1]))
        x = nn.Dense(x, hidden, kernel_init=small_normal)
        x = nn.relu(x)
        x = TiedMLP(x, depth=2)
        x = nn.Dense(x, num_classes)
        return nn.log_softmax(x)


aot.target("cnn_b4", CNN, x=aot.f32[4, 28, 28, 1], platforms=("cpu", "tpu"))
