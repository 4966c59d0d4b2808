"""An LSTM encoder-decoder (seq2seq), recurrent over time with `jax.lax.scan`.

The encoder reads the source sequence; its final carry starts the decoder,
which is teacher-forced on the target sequence (the previous target token at
each step). Both loops are real `lax.scan`s in the generated code: its size
does not depend on the sequence lengths.
"""
import jax
import jax.numpy as jnp

from aotflax import aot, nn

CONFIG = {"vocab": 32, "embed_dim": 16, "hidden": 32}


class Encoder(nn.Module):
    def apply(self, tokens, vocab: int, embed_dim: int, hidden: int):
        x = nn.Embed(tokens, vocab, embed_dim, name="embed")
        cell = nn.LSTMCell.shared(name="lstm")
        carry = nn.LSTMCell.initialize_carry(None, (tokens.shape[0],), hidden)

        def step(carry, x_t):
            carry, y = cell(carry, x_t)
            return carry, y

        carry, _ = jax.lax.scan(step, carry, jnp.swapaxes(x, 0, 1))
        return carry


class Decoder(nn.Module):
    def apply(self, carry, inputs, vocab: int, embed_dim: int):
        x = nn.Embed(inputs, vocab, embed_dim, name="embed")
        cell = nn.LSTMCell.shared(name="lstm")

        def step(carry, x_t):
            carry, y = cell(carry, x_t)
            return carry, y

        _, ys = jax.lax.scan(step, carry, jnp.swapaxes(x, 0, 1))
        logits = nn.Dense(jnp.swapaxes(ys, 0, 1), vocab, name="logits")
        return logits


class Seq2Seq(nn.Module):
    def apply(self, source, target, vocab: int, embed_dim: int, hidden: int):
        carry = Encoder(source, vocab, embed_dim, hidden, name="encoder")
        # teacher forcing: the decoder sees <bos>=0 then the target shifted right
        inputs = jnp.concatenate([jnp.zeros_like(target[:, :1]), target[:, :-1]], axis=1)
        return Decoder(carry, inputs, vocab, embed_dim, name="decoder")


aot.target("seq2seq", Seq2Seq.partial(**CONFIG), source=aot.i32[4, 10], target=aot.i32[4, 8],
           platforms=("cpu", "tpu"))
