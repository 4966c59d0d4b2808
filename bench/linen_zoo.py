"""Flax Linen twins of the model zoo in `models/`, for benchmarks (same parameter trees).

Each class here has exactly the parameter tree of the generated target it is
compared with, so one parameter file feeds both.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    """models/mlp.py: MLP."""

    hidden: Sequence[int] = (128, 64)
    num_classes: int = 10

    @nn.compact
    def __call__(self, x):
        x = x.reshape((x.shape[0], -1))
        for i, h in enumerate(self.hidden):
            x = nn.relu(nn.Dense(h, name=f"hidden_{i}")(x))
        return nn.log_softmax(nn.Dense(self.num_classes)(x))


class _Scale(nn.Module):
    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],))
        return x * scale.reshape((1,) * (x.ndim - 1) + (-1,))


class _ConvBlock(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(self.features, (3, 3), padding="SAME", name="conv")(x))
        return nn.max_pool(x, (2, 2), strides=(2, 2))


class _TiedMLP(nn.Module):
    depth: int = 2

    @nn.compact
    def __call__(self, x):
        dense = nn.Dense(x.shape[-1], name="tied")
        for _ in range(self.depth):
            x = x + nn.relu(dense(x))
        return x


class CNN(nn.Module):
    """models/cnn.py: CNN."""

    widths: Sequence[int] = (32, 64)
    hidden: int = 128
    num_classes: int = 10

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(self.widths[0], (3, 3), name="conv1")(x))
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        for i, w in enumerate(self.widths[1:]):
            x = _ConvBlock(w, name=f"block{i + 1}")(x)
        x = _Scale(name="scale")(x)
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(self.hidden)(x))
        x = _TiedMLP(2, name="TiedMLP_0")(x)
        return nn.log_softmax(nn.Dense(self.num_classes)(x))


class ResNetBlock(nn.Module):
    """models/resnet.py: ResNetBlock (Flax's examples/imagenet/models.py)."""

    filters: int
    conv: Any
    norm: Any
    act: Any
    strides: tuple[int, int] = (1, 1)

    @nn.compact
    def __call__(self, x):
        residual = x
        y = self.conv(self.filters, (3, 3), self.strides)(x)
        y = self.act(self.norm()(y))
        y = self.conv(self.filters, (3, 3))(y)
        y = self.norm(scale_init=nn.initializers.zeros_init())(y)
        if residual.shape != y.shape:
            residual = self.conv(self.filters, (1, 1), self.strides, name="conv_proj")(residual)
            residual = self.norm(name="norm_proj")(residual)
        return self.act(residual + y)


class BottleneckResNetBlock(nn.Module):
    """models/resnet.py: BottleneckResNetBlock."""

    filters: int
    conv: Any
    norm: Any
    act: Any
    strides: tuple[int, int] = (1, 1)

    @nn.compact
    def __call__(self, x):
        residual = x
        y = self.act(self.norm()(self.conv(self.filters, (1, 1))(x)))
        y = self.act(self.norm()(self.conv(self.filters, (3, 3), self.strides)(y)))
        y = self.conv(self.filters * 4, (1, 1))(y)
        y = self.norm(scale_init=nn.initializers.zeros_init())(y)
        if residual.shape != y.shape:
            residual = self.conv(self.filters * 4, (1, 1), self.strides,
                                 name="conv_proj")(residual)
            residual = self.norm(name="norm_proj")(residual)
        return self.act(residual + y)


class ResNet(nn.Module):
    """models/resnet.py: ResNet; `train` is a field so `apply(v, x)` is inference by default."""

    stage_sizes: Sequence[int]
    block_cls: Any
    num_filters: int = 64
    num_classes: int = 1000
    dtype: Any = jnp.float32
    train: bool = False

    @nn.compact
    def __call__(self, x):
        conv = partial(nn.Conv, use_bias=False, dtype=self.dtype)
        norm = partial(nn.BatchNorm, use_running_average=not self.train, momentum=0.9,
                       epsilon=1e-5, dtype=self.dtype)
        x = conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)],
                 name="conv_init")(x)
        x = nn.relu(norm(name="bn_init")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for i, block_size in enumerate(self.stage_sizes):
            for j in range(block_size):
                strides = (2, 2) if i > 0 and j == 0 else (1, 1)
                x = self.block_cls(self.num_filters * 2**i, strides=strides, conv=conv,
                                   norm=norm, act=nn.relu)(x)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dense(self.num_classes, dtype=self.dtype)(x)
        return jnp.asarray(x, self.dtype)


ResNet18 = partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=ResNetBlock)
ResNet50 = partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BottleneckResNetBlock)


#: models/transformer.py's CONFIG.
LM_CONFIG = {"vocab": 128, "dim": 64, "heads": 4, "layers": 2, "mlp_ratio": 4, "max_len": 64}


class _Pos(nn.Module):
    max_len: int

    @nn.compact
    def __call__(self, x):
        table = self.param("pos_embedding", nn.initializers.normal(0.02),
                           (self.max_len, x.shape[-1]))
        # a gather, as models/transformer.py writes it (its gradient is a scatter-add)
        return x + jnp.take(table, jnp.arange(x.shape[1]), axis=0)[None]


class _Block(nn.Module):
    heads: int
    mlp_ratio: int
    dropout: float = 0.0
    train: bool = False

    @nn.compact
    def __call__(self, x):
        drop = partial(nn.Dropout, rate=self.dropout, deterministic=not self.train)
        y = nn.LayerNorm()(x)
        mask = nn.make_causal_mask(jnp.ones(x.shape[:2]))
        y = nn.SelfAttention(num_heads=self.heads, dropout_rate=self.dropout,
                             deterministic=not self.train)(y, mask=mask)
        x = x + drop()(y)
        y = nn.LayerNorm()(x)
        y = nn.gelu(nn.Dense(x.shape[-1] * self.mlp_ratio)(y))
        return x + drop()(nn.Dense(x.shape[-1])(y))


class TransformerLM(nn.Module):
    """models/transformer.py: TransformerLM; evaluation mode (lm_eval) by default,
    `TransformerLM(dropout=0.1, train=True)` is lm_train's model (rng "dropout")."""

    dropout: float = 0.0
    train: bool = False

    @nn.compact
    def __call__(self, tokens):
        cfg = LM_CONFIG
        embed = nn.Embed(cfg["vocab"], cfg["dim"], name="embed")
        x = _Pos(cfg["max_len"], name="pos")(embed(tokens))
        x = nn.Dropout(self.dropout, deterministic=not self.train)(x)
        for i in range(cfg["layers"]):
            x = _Block(cfg["heads"], cfg["mlp_ratio"], self.dropout, self.train,
                       name=f"block_{i}")(x)
        return embed.attend(nn.LayerNorm(name="ln_f")(x))


class _Encoder(nn.Module):
    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(32, 16, name="embed")(tokens)
        cell = nn.LSTMCell(32, name="lstm")
        carry = (jnp.zeros((tokens.shape[0], 32)), jnp.zeros((tokens.shape[0], 32)))
        for t in range(x.shape[1]):
            carry, _ = cell(carry, x[:, t])
        return carry


class _Decoder(nn.Module):
    @nn.compact
    def __call__(self, carry, inputs):
        x = nn.Embed(32, 16, name="embed")(inputs)
        cell = nn.LSTMCell(32, name="lstm")
        ys = []
        for t in range(x.shape[1]):
            carry, y = cell(carry, x[:, t])
            ys.append(y)
        return nn.Dense(32, name="logits")(jnp.stack(ys, axis=1))


class Seq2Seq(nn.Module):
    """models/seq2seq.py: the LSTM encoder-decoder, unrolled over time as old flax.nn
    users wrote it (the generated code scans)."""

    @nn.compact
    def __call__(self, source, target):
        carry = _Encoder(name="encoder")(source)
        inputs = jnp.concatenate([jnp.zeros_like(target[:, :1]), target[:, :-1]], axis=1)
        return _Decoder(name="decoder")(carry, inputs)


def apply_fn(model: Any):
    """`(variables, x) -> outputs` for jitting."""
    return jax.jit(lambda v, x: model.apply(v, x))


__all__ = ["MLP", "CNN", "ResNet", "ResNet18", "ResNet50", "apply_fn", "jnp"]
