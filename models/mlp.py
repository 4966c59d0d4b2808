"""A multi-layer perceptron for MNIST."""
from aotflax import nn, aot
import jax.numpy as jnp


class MLP(nn.Module):
    def apply(self, x, hidden=(128, 64), num_classes: int = 10):
        x = x.reshape((x.shape[0], -1))
        for i, h in enumerate(hidden):
            x = nn.Dense(x, h, name=f"hidden_{i}")
            x = nn.relu(x)
        x = nn.Dense(x, num_classes)
        return nn.log_softmax(x)


# Listing tpu gets a TPU export; `aot_build.py models/ --tpu-topology v5e:2x2` adds the
# native TPU executable (see the README, "Shipping to TPU and GPU hosts").
aot.target("mlp_b8", MLP, x=aot.f32[8, 28, 28, 1], platforms=("cpu", "tpu"))
# A serving target: any batch size. One native executable per bucket (load() pads a
# request to the smallest that fits), and the portable export for CPU, GPU and TPU hosts.
aot.target("mlp_serve", MLP, x=aot.f32["batch", 28, 28, 1], platforms=("cpu", "cuda", "tpu"),
           buckets={"batch": (1, 8, 32, 128)})
