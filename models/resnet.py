"""ResNet-18 and ResNet-50 for image classification.

The structure of Flax's `examples/imagenet/models.py`, written in the old
`flax.nn` style: basic and bottleneck blocks with projection shortcuts, the
convolution and BatchNorm partials built once in `apply` and passed to the
blocks, and the last BatchNorm of each block initialized to zero.  `train` is a
static hyperparameter: a training target updates `batch_stats`, an evaluation
target reads them.  Parameter and state trees are Linen's (`conv_init`,
`bn_init`, `ResNetBlock_0/Conv_0`, `.../conv_proj`, `.../norm_proj`, ...).
"""
import jax.numpy as jnp
import optax

from aotflax import aot, nn


class ResNetBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34)."""

    def apply(self, x, filters: int, conv, norm, act=nn.relu, strides=(1, 1)):
        residual = x
        y = conv(x, filters, (3, 3), strides)
        y = norm(y)
        y = act(y)
        y = conv(y, filters, (3, 3))
        y = norm(y, scale_init=nn.initializers.zeros)
        if residual.shape != y.shape:
            residual = conv(residual, filters, (1, 1), strides, name="conv_proj")
            residual = norm(residual, name="norm_proj")
        return act(residual + y)


class BottleneckResNetBlock(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4) convolutions (ResNet-50/101/152)."""

    def apply(self, x, filters: int, conv, norm, act=nn.relu, strides=(1, 1)):
        residual = x
        y = conv(x, filters, (1, 1))
        y = norm(y)
        y = act(y)
        y = conv(y, filters, (3, 3), strides)
        y = norm(y)
        y = act(y)
        y = conv(y, filters * 4, (1, 1))
        y = norm(y, scale_init=nn.initializers.zeros)
        if residual.shape != y.shape:
            residual = conv(residual, filters * 4, (1, 1), strides, name="conv_proj")
            residual = norm(residual, name="norm_proj")
        return act(residual + y)


class ResNet(nn.Module):
    def apply(self, x, stage_sizes, block_cls, num_filters: int = 64, num_classes: int = 1000,
              dtype=jnp.float32, act=nn.relu, train: bool = True):
        conv = nn.Conv.partial(bias=False, dtype=dtype)
        norm = nn.BatchNorm.partial(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                    dtype=dtype)
        x = conv(x, num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="conv_init")
        x = norm(x, name="bn_init")
        x = nn.relu(x)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for i, block_size in enumerate(stage_sizes):
            for j in range(block_size):
                strides = (2, 2) if i > 0 and j == 0 else (1, 1)
                x = block_cls(x, num_filters * 2**i, strides=strides, conv=conv, norm=norm,
                              act=act)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dense(x, num_classes, dtype=dtype)
        return jnp.asarray(x, dtype)


ResNet18 = ResNet.partial(stage_sizes=(2, 2, 2, 2), block_cls=ResNetBlock)
ResNet50 = ResNet.partial(stage_sizes=(3, 4, 6, 3), block_cls=BottleneckResNetBlock)

# Small images and widths: quick to build and compile (tests, examples).
SMALL = {"num_filters": 8, "num_classes": 10}
aot.target("resnet18_train", ResNet18.partial(train=True, **SMALL), x=aot.f32[2, 32, 32, 3])
aot.target("resnet18_eval", ResNet18.partial(train=False, **SMALL), x=aot.f32[2, 32, 32, 3],
           platforms=("cpu", "tpu"))
aot.target("resnet50_train", ResNet50.partial(train=True, **SMALL), x=aot.f32[2, 32, 32, 3])

# ImageNet shapes, full width: inference for serving and benchmarks (bench/cold_start.py).
aot.target("resnet50_b1", ResNet50.partial(train=False), x=aot.f32[1, 224, 224, 3])
aot.target("resnet50_b8", ResNet50.partial(train=False), x=aot.f32[8, 224, 224, 3])


def cross_entropy(logits, labels):
    """Softmax cross-entropy against integer labels, with accuracy as a metric."""
    logp = nn.log_softmax(logits)
    loss = -jnp.mean(jnp.sum(nn.one_hot(labels, logits.shape[-1]) * logp, axis=-1))
    accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
    return loss, {"accuracy": accuracy}


# A full training step (forward, backward, SGD with momentum, batch statistics) at
# ResNet-18's full width on 64x64 images: what a training host starts (bench/cold_start.py).
aot.train_target("resnet18_train_step", ResNet18.partial(train=True), loss=cross_entropy,
                 optimizer=optax.sgd(0.1, momentum=0.9), x=aot.f32[8, 64, 64, 3],
                 labels=aot.i32[8])
