"""A decoder-only Transformer language model with tied input/output embeddings.

One module, five targets sharing one parameter tree: a training step (dropout,
next-token cross-entropy, AdamW with no weight decay on biases and norms), an
evaluation forward pass, and the serving pair for autoregressive decoding:
`lm_prefill` runs the prompt and fills Linen's `cache` collection (keys,
values, positions), `lm_decode` takes one token and the cache and returns the
next logits and the updated cache.
"""
import jax.numpy as jnp
import optax

from aotflax import aot, nn

#: Small enough to build and compile quickly on a laptop CPU.
CONFIG = {"vocab": 128, "dim": 64, "heads": 4, "layers": 2, "mlp_ratio": 4, "max_len": 64}


class PositionEmbedding(nn.Module):
    """Learned positions; when decoding, the next position is kept in the cache."""

    def apply(self, x, max_len: int, decode: bool = False):
        table = self.param("pos_embedding", (max_len, x.shape[-1]),
                           nn.initializers.normal(stddev=0.02))
        positions = jnp.arange(x.shape[1])
        if decode:
            index = self.state("position", (), nn.initializers.zeros, dtype=jnp.int32,
                               collection="cache")
            positions = positions + index.value
            index.value = index.value + x.shape[1]
        return x + jnp.take(table, positions, axis=0)[None]


class Block(nn.Module):
    """Pre-LayerNorm block: causal self-attention, then a gelu MLP; both residual."""

    def apply(self, x, heads: int, mlp_ratio: int, max_len: int, dropout: float = 0.0,
              train: bool = False, decode: bool = False):
        y = nn.LayerNorm(x)
        y = nn.SelfAttention(y, num_heads=heads, causal_mask=not decode, decode=decode,
                             max_length=max_len, dropout_rate=dropout,
                             deterministic=not train)
        x = x + nn.dropout(y, rate=dropout, deterministic=not train)
        y = nn.LayerNorm(x)
        y = nn.gelu(nn.Dense(y, x.shape[-1] * mlp_ratio))
        y = nn.Dense(y, x.shape[-1])
        return x + nn.dropout(y, rate=dropout, deterministic=not train)


class TransformerLM(nn.Module):
    def apply(self, tokens, vocab: int, dim: int, heads: int, layers: int, mlp_ratio: int,
              max_len: int, dropout: float = 0.0, train: bool = False, decode: bool = False):
        embed = nn.Embed.shared(num_embeddings=vocab, features=dim, name="embed")
        x = embed(tokens)
        x = PositionEmbedding(x, max_len, decode=decode, name="pos")
        x = nn.dropout(x, rate=dropout, deterministic=not train)
        for i in range(layers):
            x = Block(x, heads, mlp_ratio, max_len, dropout=dropout, train=train,
                      decode=decode, name=f"block_{i}")
        x = nn.LayerNorm(x, name="ln_f")
        return embed.attend(x)  # the output projection is the embedding (weight tying)


def next_token_loss(logits, tokens):
    """Cross-entropy of each position's prediction of the following token."""
    logp = nn.log_softmax(logits[:, :-1])
    targets = nn.one_hot(tokens[:, 1:], logits.shape[-1])
    loss = -jnp.mean(jnp.sum(targets * logp, axis=-1))
    accuracy = jnp.mean((jnp.argmax(logits[:, :-1], axis=-1) == tokens[:, 1:]).astype(
        jnp.float32))
    return loss, {"accuracy": accuracy}


LM = TransformerLM.partial(**CONFIG)
DECAY = aot.ModelParamTraversal(lambda path, param: param.ndim > 1)
NO_DECAY = aot.ModelParamTraversal(lambda path, param: param.ndim <= 1)

aot.train_target(
    "lm_train", LM.partial(dropout=0.1, train=True), loss=next_token_loss,
    optimizer=aot.MultiOptimizer(
        (DECAY, optax.adamw(3e-4, weight_decay=0.1)),
        (NO_DECAY, optax.adam(3e-4)),
    ),
    tokens=aot.i32[4, 32],
)
aot.target("lm_eval", LM, tokens=aot.i32[4, 32], platforms=("cpu", "tpu"))
aot.target("lm_prefill", LM.partial(decode=True), tokens=aot.i32[1, 8])
aot.target("lm_decode", LM.partial(decode=True), tokens=aot.i32[1, 1])
