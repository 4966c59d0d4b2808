"""Flax Linen twins of the Flax v0.2 example models in the corpus (`bench/corpus_parity.py`).

Each class here is written from the old `flax.nn` source of the example it
names (the corpus keeps those files; they are not copied here) and computes
what that `flax.nn` code computed, in Linen.  Parameter trees follow Linen's
naming, which is the tree aotflax generates for the corpus target: automatic
names counted per class (`Dense_0`, `LayerNorm_1`), explicit `name=` kept,
and a shared module's parameters at the path of the module that created it.
One perturbed parameter tree therefore drives both.

Where old `flax.nn` differs from the Linen layer of the same name, the twin
follows the old code (it is the behaviour a ported file must keep):

- attention masks become an additive bias of -1e10 (old
  `MultiHeadDotProductAttention`), not Linen's `finfo.min` substitution;
- `nn.dropout` with `rate == 0` is the identity whatever `deterministic` says
  (old `flax.nn.dropout`; Linen's `Dropout` does the same);
- `LSTMCell.initialize_carry(rng, batch_dims, size)` is zeros.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any


# ----------------------------------------------------------------------------- shared pieces


def old_attention(query, key, value, bias=None, mask=None, broadcast_dropout=True,
                  dropout_rng=None, dropout_rate=0.0, deterministic=False, dtype=None,
                  precision=None, **unused):
    """Old `flax.nn` attention: the boolean mask enters as a bias of 0 / -1e10."""
    del unused
    if mask is not None:
        old_bias = jnp.where(mask, 0.0, -1e10).astype(dtype or query.dtype)
        bias = old_bias if bias is None else bias + old_bias
    return nn.dot_product_attention(query, key, value, bias=bias,
                                    broadcast_dropout=broadcast_dropout,
                                    dropout_rng=dropout_rng, dropout_rate=dropout_rate,
                                    deterministic=deterministic, dtype=dtype,
                                    precision=precision)


class SelfAttention(nn.MultiHeadDotProductAttention):
    """Old `nn.SelfAttention`: multi-head attention whose `inputs_kv` defaults to the queries.

    Subclassed (rather than Linen's deprecated `SelfAttention`) so that it takes
    `inputs_kv=` for cross-attention, as the old partial did, and is auto-named
    `SelfAttention_N` like the old call.
    """

    attention_fn: Callable[..., Any] = old_attention


def padding_mask(query_mask, key_mask):
    """Old `make_padding_mask` for 1-D attention: `[b, lq, 1] x [b, lk, 1] -> [b, 1, lq, lk]`."""
    q = query_mask.reshape(query_mask.shape[0], 1, -1, 1)
    k = key_mask.reshape(key_mask.shape[0], 1, 1, -1)
    return (q * k) > 0


def causal_mask(length: int):
    """Old `_make_causal_mask` for 1-D attention: `[1, 1, length, length]`, lower triangle."""
    return jnp.tril(jnp.ones((length, length), dtype=bool))[None, None]


def shift_right(x, axis: int = 1):
    """lm1b/wmt `shift_right`: pad one zero at the front of `axis`, drop the last."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (1, 0)
    return jnp.pad(x, pad, mode="constant", constant_values=x.dtype.type(0))[:, :-1]


def dropout(x, rate: float, deterministic: bool):
    """Old `nn.dropout`: identity when `rate == 0` or deterministic, else Linen's Dropout."""
    if rate == 0.0 or deterministic:
        return x
    return nn.Dropout(rate)(x, deterministic=False)


# ----------------------------------------------------------------------------- imagenet


class ResidualBlock(nn.Module):
    """imagenet/models.py: ResidualBlock (bottleneck)."""

    filters: int
    strides: tuple[int, int] = (1, 1)
    train: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        needs_projection = x.shape[-1] != self.filters * 4 or self.strides != (1, 1)
        batch_norm = partial(nn.BatchNorm, use_running_average=not self.train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype)
        conv = partial(nn.Conv, use_bias=False, dtype=self.dtype)
        residual = x
        if needs_projection:
            residual = conv(self.filters * 4, (1, 1), self.strides, name="proj_conv")(residual)
            residual = batch_norm(name="proj_bn")(residual)
        y = conv(self.filters, (1, 1), name="conv1")(x)
        y = nn.relu(batch_norm(name="bn1")(y))
        y = conv(self.filters, (3, 3), self.strides, name="conv2")(y)
        y = nn.relu(batch_norm(name="bn2")(y))
        y = conv(self.filters * 4, (1, 1), name="conv3")(y)
        y = batch_norm(name="bn3", scale_init=nn.initializers.zeros)(y)
        return nn.relu(residual + y)


_BLOCK_SIZES = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3],
                152: [3, 8, 36, 3], 200: [3, 24, 36, 3]}


class ResNet(nn.Module):
    """imagenet/models.py: ResNet (V1, bottleneck blocks, log-softmax output)."""

    num_classes: int
    num_filters: int = 64
    num_layers: int = 50
    train: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], use_bias=False,
                    dtype=self.dtype, name="init_conv")(x)
        x = nn.BatchNorm(use_running_average=not self.train, momentum=0.9, epsilon=1e-5,
                         dtype=self.dtype, name="init_bn")(x)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for i, block_size in enumerate(_BLOCK_SIZES[self.num_layers]):
            for j in range(block_size):
                strides = (2, 2) if i > 0 and j == 0 else (1, 1)
                x = ResidualBlock(self.num_filters * 2**i, strides=strides, train=self.train,
                                  dtype=self.dtype)(x)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dense(self.num_classes, dtype=self.dtype)(x)
        return nn.log_softmax(jnp.asarray(x, self.dtype))


# ----------------------------------------------------------------------------- cifar10


class WideResnetBlock(nn.Module):
    """cifar10/models/wideresnet.py: WideResnetBlock."""

    channels: int
    strides: tuple[int, int] = (1, 1)
    dropout_rate: float = 0.0
    train: bool = True

    @nn.compact
    def __call__(self, x):
        batch_norm = partial(nn.BatchNorm, use_running_average=not self.train, momentum=0.9,
                             epsilon=1e-5)
        y = jax.nn.relu(batch_norm(name="bn1")(x))
        y = nn.Conv(self.channels, (3, 3), self.strides, padding="SAME", name="conv1")(y)
        y = jax.nn.relu(batch_norm(name="bn2")(y))
        if self.dropout_rate > 0.0:
            y = dropout(y, self.dropout_rate, deterministic=not self.train)
        y = nn.Conv(self.channels, (3, 3), padding="SAME", name="conv2")(y)
        if x.shape[-1] != self.channels or self.strides != (1, 1):
            x = nn.Conv(self.channels, (3, 3), self.strides, padding="SAME")(x)
        return x + y


class WideResnetGroup(nn.Module):
    """cifar10/models/wideresnet.py: WideResnetGroup."""

    blocks_per_group: int
    channels: int
    strides: tuple[int, int] = (1, 1)
    dropout_rate: float = 0.0
    train: bool = True

    @nn.compact
    def __call__(self, x):
        for i in range(self.blocks_per_group):
            x = WideResnetBlock(self.channels, self.strides if i == 0 else (1, 1),
                                self.dropout_rate, train=self.train)(x)
        return x


class WideResnet(nn.Module):
    """cifar10/models/wideresnet.py: WideResnet."""

    blocks_per_group: int
    channel_multiplier: int
    num_outputs: int
    dropout_rate: float = 0.0
    train: bool = True

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(16, (3, 3), padding="SAME", name="init_conv")(x)
        for channels, strides in ((16, (1, 1)), (32, (2, 2)), (64, (2, 2))):
            x = WideResnetGroup(self.blocks_per_group, channels * self.channel_multiplier,
                                strides, dropout_rate=self.dropout_rate, train=self.train)(x)
        x = nn.BatchNorm(use_running_average=not self.train, momentum=0.9, epsilon=1e-5)(x)
        x = jax.nn.relu(x)
        x = nn.avg_pool(x, (8, 8))
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(self.num_outputs)(x)


# ----------------------------------------------------------------------------- lm1b


class LMEmbed(nn.Module):
    """lm1b/models.py: Embed (its own module: a `self.param` table and `jnp.take`)."""

    num_embeddings: int
    features: int

    @nn.compact
    def __call__(self, inputs):
        embedding = self.param("embedding", nn.initializers.normal(stddev=1.0),
                               (self.num_embeddings, self.features))
        return jnp.take(embedding, inputs, axis=0)


def lm1b_sinusoidal_init(max_len: int = 2048):
    """lm1b/models.py: sinusoidal_init (a parameter initializer there)."""

    def init(key, shape, dtype=np.float32):
        del key, dtype
        d_feature = shape[-1]
        pe = np.zeros((max_len, d_feature), dtype=np.float32)
        position = np.arange(0, max_len)[:, np.newaxis]
        div_term = np.exp(np.arange(0, d_feature, 2) * -(np.log(10000.0) / d_feature))
        pe[:, 0::2] = np.sin(position * div_term)
        pe[:, 1::2] = np.cos(position * div_term)
        return jnp.array(pe[np.newaxis, :, :])

    return init


class AddPositionEmbs(nn.Module):
    """lm1b/models.py: AddPositionEmbs (a learned `pos_embedding` parameter)."""

    max_len: int = 2048
    posemb_init: Callable[..., Any] = nn.initializers.normal(stddev=1.0)

    @nn.compact
    def __call__(self, inputs):
        length = inputs.shape[1]
        pos_embedding = self.param("pos_embedding", self.posemb_init,
                                   (1, self.max_len, inputs.shape[-1]))
        return inputs + pos_embedding[:, :length, :]


class MlpBlock(nn.Module):
    """lm1b/models.py and wmt/models.py: MlpBlock (gelu in lm1b, relu in wmt)."""

    mlp_dim: int
    activation: Callable[..., Any] = nn.gelu
    dtype: Dtype = jnp.float32
    dropout_rate: float = 0.1
    deterministic: bool = False

    @nn.compact
    def __call__(self, inputs):
        dense = partial(nn.Dense, dtype=self.dtype, kernel_init=nn.initializers.xavier_uniform(),
                        bias_init=nn.initializers.normal(stddev=1e-6))
        x = self.activation(dense(self.mlp_dim)(inputs))
        x = dropout(x, self.dropout_rate, self.deterministic)
        out = dense(inputs.shape[-1])(x)
        return dropout(out, self.dropout_rate, self.deterministic)


def _attention(num_heads: int, qkv_dim: int, dtype: Dtype, attention_dropout_rate: float,
               deterministic: bool) -> SelfAttention:
    """The `nn.SelfAttention(...)` call of the lm1b / wmt blocks, as a Linen module."""
    return SelfAttention(num_heads=num_heads, dtype=dtype, qkv_features=qkv_dim,
                         kernel_init=nn.initializers.xavier_uniform(),
                         bias_init=nn.initializers.normal(stddev=1e-6), use_bias=False,
                         broadcast_dropout=False, dropout_rate=attention_dropout_rate,
                         deterministic=deterministic)


class Transformer1DBlock(nn.Module):
    """lm1b/models.py: Transformer1DBlock (causal, padding-masked self-attention)."""

    qkv_dim: int
    mlp_dim: int
    num_heads: int
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    deterministic: bool = False

    @nn.compact
    def __call__(self, inputs, padding):
        x = nn.LayerNorm()(inputs)
        mask = jnp.logical_and(causal_mask(x.shape[1]), padding_mask(padding, padding))
        x = _attention(self.num_heads, self.qkv_dim, jnp.float32, self.attention_dropout_rate,
                       self.deterministic)(x, mask=mask)
        x = dropout(x, self.dropout_rate, self.deterministic) + inputs
        y = nn.LayerNorm()(x)
        y = MlpBlock(self.mlp_dim, dropout_rate=self.dropout_rate,
                     deterministic=self.deterministic)(y)
        return x + y


class TransformerLM(nn.Module):
    """lm1b/models.py: TransformerLM (no decode cache)."""

    vocab_size: int
    emb_dim: int = 512
    num_heads: int = 8
    num_layers: int = 6
    qkv_dim: int = 512
    mlp_dim: int = 2048
    max_len: int = 2048
    train: bool = False
    shift: bool = True
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1

    @nn.compact
    def __call__(self, inputs):
        padding = jnp.where(inputs > 0, 1, 0).astype(jnp.float32)[..., None]
        x = shift_right(inputs) if self.shift else inputs
        x = LMEmbed(self.vocab_size, self.emb_dim, name="embed")(x.astype("int32"))
        x = AddPositionEmbs(self.max_len, lm1b_sinusoidal_init(self.max_len))(x)
        x = dropout(x, self.dropout_rate, not self.train)
        for _ in range(self.num_layers):
            x = Transformer1DBlock(self.qkv_dim, self.mlp_dim, self.num_heads,
                                   self.dropout_rate, self.attention_dropout_rate,
                                   deterministic=not self.train)(x, padding)
        x = nn.LayerNorm()(x)
        return nn.Dense(self.vocab_size, kernel_init=nn.initializers.xavier_uniform(),
                        bias_init=nn.initializers.normal(stddev=1e-6))(x)


# ----------------------------------------------------------------------------- wmt


def wmt_sinusoidal_table(max_len: int, d_feature: int, min_scale: float = 1.0,
                         max_scale: float = 10000.0) -> np.ndarray:
    """wmt/models.py: sinusoidal_init's table `[1, max_len, d_feature]` (fixed, no parameter)."""
    pe = np.zeros((max_len, d_feature), dtype=np.float32)
    position = np.arange(0, max_len)[:, np.newaxis]
    scale_factor = -np.log(max_scale / min_scale) / (d_feature // 2 - 1)
    div_term = min_scale * np.exp(np.arange(0, d_feature // 2) * scale_factor)
    pe[:, :d_feature // 2] = np.sin(position * div_term)
    pe[:, d_feature // 2: 2 * (d_feature // 2)] = np.cos(position * div_term)
    return pe[np.newaxis, :, :]


def wmt_add_position_embs(inputs, max_len: int):
    """wmt/models.py: AddPositionEmbs with `posemb_init=None` (a module without parameters)."""
    table = jnp.array(wmt_sinusoidal_table(max_len, inputs.shape[-1]))
    return inputs + table[:, : inputs.shape[1], :]


class Encoder1DBlock(nn.Module):
    """wmt/models.py: Encoder1DBlock."""

    qkv_dim: int
    mlp_dim: int
    num_heads: int
    dtype: Dtype = jnp.float32
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    deterministic: bool = False

    @nn.compact
    def __call__(self, inputs, padding):
        x = nn.LayerNorm(dtype=self.dtype)(inputs)
        x = _attention(self.num_heads, self.qkv_dim, self.dtype, self.attention_dropout_rate,
                       self.deterministic)(x, inputs_kv=x, mask=padding_mask(padding, padding))
        x = dropout(x, self.dropout_rate, self.deterministic) + inputs
        y = nn.LayerNorm(dtype=self.dtype)(x)
        y = MlpBlock(self.mlp_dim, nn.relu, self.dtype, self.dropout_rate,
                     self.deterministic)(y)
        return x + y


class EncoderDecoder1DBlock(nn.Module):
    """wmt/models.py: EncoderDecoder1DBlock (causal self-attention, then cross-attention)."""

    qkv_dim: int
    mlp_dim: int
    num_heads: int
    dtype: Dtype = jnp.float32
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    deterministic: bool = False

    @nn.compact
    def __call__(self, targets, encoded, padding, key_padding):
        attention = partial(_attention, self.num_heads, self.qkv_dim, self.dtype,
                            self.attention_dropout_rate, self.deterministic)
        x = nn.LayerNorm(dtype=self.dtype)(targets)
        mask = jnp.logical_and(causal_mask(x.shape[1]), padding_mask(padding, padding))
        x = attention()(x, inputs_kv=x, mask=mask)
        x = dropout(x, self.dropout_rate, self.deterministic) + targets
        y = nn.LayerNorm(dtype=self.dtype)(x)
        y = attention()(y, inputs_kv=encoded, mask=padding_mask(padding, key_padding))
        y = dropout(y, self.dropout_rate, self.deterministic) + x
        z = nn.LayerNorm(dtype=self.dtype)(y)
        z = MlpBlock(self.mlp_dim, nn.relu, self.dtype, self.dropout_rate,
                     self.deterministic)(z)
        return y + z


def _embed(vocab_size: int, emb_dim: int, **kw: Any) -> nn.Embed:
    return nn.Embed(vocab_size, emb_dim, embedding_init=nn.initializers.normal(stddev=1.0), **kw)


class Encoder(nn.Module):
    """wmt/models.py: Encoder (float32; no packed inputs)."""

    vocab_size: int
    shared_embedding: Any = None
    emb_dim: int = 512
    num_heads: int = 8
    num_layers: int = 6
    qkv_dim: int = 512
    mlp_dim: int = 2048
    max_len: int = 512
    train: bool = True
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1

    @nn.compact
    def __call__(self, inputs):
        src_padding = (inputs > 0)[..., None]
        embed = self.shared_embedding
        if embed is None:
            embed = _embed(self.vocab_size, self.emb_dim)
        x = embed(inputs.astype("int32"))
        x = wmt_add_position_embs(x, self.max_len)
        x = dropout(x, self.dropout_rate, not self.train)
        for lyr in range(self.num_layers):
            x = Encoder1DBlock(self.qkv_dim, self.mlp_dim, self.num_heads,
                               dropout_rate=self.dropout_rate,
                               attention_dropout_rate=self.attention_dropout_rate,
                               deterministic=not self.train, name=f"encoderblock_{lyr}")(
                                   x, src_padding)
        return nn.LayerNorm(name="encoder_norm")(x)


class Decoder(nn.Module):
    """wmt/models.py: Decoder (float32; no packed inputs, no decode cache)."""

    output_vocab_size: int
    shared_embedding: Any = None
    logits_via_embedding: bool = False
    shift: bool = True
    emb_dim: int = 512
    num_heads: int = 8
    num_layers: int = 6
    qkv_dim: int = 512
    mlp_dim: int = 2048
    max_len: int = 512
    train: bool = True
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1

    @nn.compact
    def __call__(self, encoded, src_padding_mask, targets):
        tgt_padding = (targets > 0)[..., None]
        embed = self.shared_embedding
        if embed is None:
            embed = _embed(self.output_vocab_size, self.emb_dim)
        y = targets.astype("int32")
        if self.shift:
            y = shift_right(y)
        y = embed(y)
        y = wmt_add_position_embs(y, self.max_len)
        y = dropout(y, self.dropout_rate, not self.train)
        for lyr in range(self.num_layers):
            y = EncoderDecoder1DBlock(self.qkv_dim, self.mlp_dim, self.num_heads,
                                      dropout_rate=self.dropout_rate,
                                      attention_dropout_rate=self.attention_dropout_rate,
                                      deterministic=not self.train,
                                      name=f"encoderdecoderblock_{lyr}")(
                                          y, encoded, tgt_padding, src_padding_mask)
        y = nn.LayerNorm(name="encoderdecoder_norm")(y)
        if self.logits_via_embedding:
            return embed.attend(y.astype(jnp.float32)) / jnp.sqrt(y.shape[-1])
        return nn.Dense(self.output_vocab_size, kernel_init=nn.initializers.xavier_uniform(),
                        bias_init=nn.initializers.normal(stddev=1e-6), name="logitdense")(y)


class Transformer(nn.Module):
    """wmt/models.py: Transformer with its `encode` and `decode` methods.

    `setup` style, because three methods share the submodules; the shared
    embedding is the attribute `Embed_0`, the name old `Embed.shared(...)`
    without a name gets (Linen's automatic name in the creating module).
    """

    vocab_size: int
    output_vocab_size: int | None = None
    share_embeddings: bool = False
    logits_via_embedding: bool = False
    emb_dim: int = 512
    num_heads: int = 8
    num_layers: int = 6
    qkv_dim: int = 512
    mlp_dim: int = 2048
    max_len: int = 2048
    train: bool = False
    shift: bool = True
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1

    def setup(self):
        shared = None
        if self.share_embeddings:
            self.Embed_0 = _embed(self.vocab_size, self.emb_dim)
            shared = self.Embed_0
        common = dict(emb_dim=self.emb_dim, num_heads=self.num_heads,
                      num_layers=self.num_layers, qkv_dim=self.qkv_dim, mlp_dim=self.mlp_dim,
                      max_len=self.max_len, train=self.train, dropout_rate=self.dropout_rate,
                      attention_dropout_rate=self.attention_dropout_rate)
        self.encoder = Encoder(self.vocab_size, shared_embedding=shared, **common)
        self.decoder = Decoder(self.output_vocab_size, shared_embedding=shared,
                               logits_via_embedding=self.logits_via_embedding,
                               shift=self.shift, **common)

    def __call__(self, inputs, targets):
        src_padding_mask = (inputs > 0)[..., None]
        return self.decoder(self.encoder(inputs), src_padding_mask, targets)

    def encode(self, inputs):
        return self.encoder(inputs)

    def decode(self, encoded, src_padding_mask, targets):
        return self.decoder(encoded, src_padding_mask, targets)


# ----------------------------------------------------------------------------- sst2


class Embedding(nn.Module):
    """sst2/model.py: Embedding."""

    num_embeddings: int
    features: int
    frozen: bool = False

    @nn.compact
    def __call__(self, inputs):
        embedding = self.param("embedding", nn.initializers.normal(stddev=0.1),
                               (self.num_embeddings, self.features))
        embed = jnp.take(embedding, inputs, axis=0)
        return jax.lax.stop_gradient(embed) if self.frozen else embed


class LSTM(nn.Module):
    """sst2/model.py: LSTM; `scan_in_dim` over time becomes a loop over one shared cell."""

    hidden_size: int

    @nn.compact
    def __call__(self, inputs, lengths):
        batch_size = inputs.shape[0]
        cell = nn.LSTMCell(self.hidden_size, name="lstm_cell")
        carry = (jnp.zeros((batch_size, self.hidden_size)),
                 jnp.zeros((batch_size, self.hidden_size)))
        outputs = []
        for t in range(inputs.shape[1]):
            carry, y = cell(carry, inputs[:, t])
            outputs.append(y)
        outputs = jnp.stack(outputs, axis=1)
        return outputs[jnp.arange(batch_size), jnp.maximum(0, lengths - 1), :]


class MLP(nn.Module):
    """sst2/model.py: MLP."""

    hidden_size: int
    output_size: int
    output_bias: bool = False
    dropout: float = 0.0
    train: bool = False

    @nn.compact
    def __call__(self, inputs):
        hidden = nn.tanh(nn.Dense(self.hidden_size, name="hidden")(inputs))
        if self.train:
            hidden = dropout(hidden, self.dropout, deterministic=False)
        return nn.Dense(self.output_size, use_bias=self.output_bias, name="output")(hidden)


class LSTMClassifier(nn.Module):
    """sst2/model.py: LSTMClassifier."""

    hidden_size: int
    output_size: int
    dropout: float = 0.0
    emb_dropout: float = 0.0
    train: bool = False

    @nn.compact
    def __call__(self, embed, lengths):
        if self.train:
            embed = dropout(embed, self.emb_dropout, deterministic=False)
        hidden = LSTM(self.hidden_size, name="lstm")(embed, lengths)
        if self.train:
            hidden = dropout(hidden, self.dropout, deterministic=False)
        return MLP(self.hidden_size, self.output_size, output_bias=False, dropout=self.dropout,
                   train=self.train, name="mlp")(hidden)


class TextClassifier(nn.Module):
    """sst2/model.py: TextClassifier (word dropout only with rate 0, as compared)."""

    vocab_size: int
    embedding_size: int
    hidden_size: int
    output_size: int
    word_dropout_rate: float = 0.0
    freeze_embeddings: bool = False
    dropout: float = 0.0
    emb_dropout: float = 0.0
    train: bool = False

    @nn.compact
    def __call__(self, inputs, lengths):
        if self.train and self.word_dropout_rate != 0.0:
            raise NotImplementedError("the twin compares word dropout only at rate 0")
        embed = Embedding(self.vocab_size, self.embedding_size, frozen=self.freeze_embeddings,
                          name="embed")(inputs)
        return LSTMClassifier(self.hidden_size, self.output_size, self.dropout,
                              self.emb_dropout, self.train, name="lstm_classifier")(
                                  embed, lengths)


# ----------------------------------------------------------------------------- vae


class VAEEncoder(nn.Module):
    """vae/train.py: Encoder."""

    latents: int

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(500, name="fc1")(x))
        return nn.Dense(self.latents, name="fc2_mean")(x), \
            nn.Dense(self.latents, name="fc2_logvar")(x)


class VAEDecoder(nn.Module):
    """vae/train.py: Decoder."""

    @nn.compact
    def __call__(self, z):
        return nn.Dense(784, name="fc2")(nn.relu(nn.Dense(500, name="fc1")(z)))


class VAE(nn.Module):
    """vae/train.py: VAE with `generate`; the decoder is one module shared by both methods."""

    latents: int = 20

    def setup(self):
        self.encoder = VAEEncoder(self.latents)
        self.decoder = VAEDecoder()

    def __call__(self, x, z_rng):
        mean, logvar = self.encoder(x)
        std = jnp.exp(0.5 * logvar)
        z = mean + jax.random.normal(z_rng, logvar.shape) * std
        return self.decoder(z), mean, logvar

    def generate(self, z):
        return nn.sigmoid(self.decoder(z))
