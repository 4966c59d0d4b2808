"""Scans the way old flax.nn code writes them: `jax_utils.scan_in_dim`, randomness inside
the step, random keys as inputs and carries.

Keys inside a scan step follow the documented rule: the call site's key (the target's
`rng` folded with the crc32 of the module path) folded once more with the step index.
"""

from __future__ import annotations

import zlib

import flax.jax_utils
import jax
import jax.numpy as jnp
import numpy as np
from helpers import build


def _hash(path: str) -> int:
    return zlib.crc32(path.encode()) & 0x7FFFFFFF


SCAN_IN_DIM = """
class Scanned(nn.Module):
    def apply(self, xs):
        cell = nn.Dense.shared(features=xs.shape[-1], name="cell")

        def step(h, x):
            h = jnp.tanh(cell(h) + x)
            return h, 2.0 * h

        h0 = jnp.zeros((xs.shape[0], xs.shape[-1]))
        return jax_utils.scan_in_dim(step, h0, xs, axis=1)


aot.target("scanned", Scanned, xs=aot.f32[2, 5, 3])
"""


def test_scan_in_dim_equals_flax_jax_utils() -> None:
    m = build("from aotflax import jax_utils\n" + SCAN_IN_DIM)
    params, state = m.scanned.init(jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    (h, ys), _ = m.scanned.apply(params, state, xs)
    cell = params["cell"]

    def step(h, x):
        h = jnp.tanh(h @ cell["kernel"] + cell["bias"][None] + x)
        return h, 2.0 * h

    want_h, want_ys = flax.jax_utils.scan_in_dim(step, jnp.zeros((2, 3)), xs, axis=1)
    np.testing.assert_allclose(h, want_h, rtol=1e-6)
    np.testing.assert_allclose(ys, want_ys, rtol=1e-6)
    assert "jax.lax.scan(" in m.__aotflax_text__


def test_make_rng_and_dropout_inside_a_scan_step_follow_the_documented_keys() -> None:
    m = build("""
    class Noisy(nn.Module):
        def apply(self, xs, rate: float = 0.5):
            def step(h, x):
                h = h + nn.dropout(x, rate=rate)
                return h, h + jax.random.normal(nn.make_rng(), h.shape)

            return jax.lax.scan(step, jnp.zeros(xs.shape[1:]), xs)

    aot.target("noisy", Noisy, xs=aot.f32[4, 3])
    """)
    params, state = m.noisy.init(jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (4, 3))
    rng = jax.random.key(7)
    (h, ys), _ = m.noisy.apply(params, state, xs, rng=rng)
    dropout_key = jax.random.fold_in(rng, _hash("Dropout_0"))
    normal_key = jax.random.fold_in(rng, _hash("make_rng_0"))
    want_h, want = jnp.zeros(3), []
    for t in range(4):
        keep = jax.random.bernoulli(jax.random.fold_in(dropout_key, t), 0.5, (3,))
        want_h = want_h + jnp.where(keep, xs[t] / 0.5, 0.0)
        want.append(want_h + jax.random.normal(jax.random.fold_in(normal_key, t), (3,)))
    np.testing.assert_allclose(h, want_h, rtol=1e-6)
    np.testing.assert_allclose(ys, jnp.stack(want), rtol=1e-6, atol=1e-6)
    # every step draws its own keys
    assert not np.allclose(ys[1] - ys[0], ys[2] - ys[1])


def test_a_random_key_is_a_target_input_and_a_module_argument() -> None:
    m = build("""
    def reparameterize(rng, mean, logvar):
        return mean + jax.random.normal(rng, logvar.shape) * jnp.exp(0.5 * logvar)


    class Decoder(nn.Module):
        def apply(self, z, rng):
            return nn.Dense(reparameterize(rng, z, z), 2, name="fc")


    class VAE(nn.Module):
        def apply(self, x, z_rng):
            return Decoder(x, z_rng, name="decoder")


    aot.target("vae", VAE, x=aot.f32[2, 3], z_rng=aot.key)
    """)
    assert str(m.vae.INPUTS["z_rng"].dtype) == "key<fry>"
    params, state = m.vae.init(jax.random.key(0))
    x, key = jax.random.normal(jax.random.key(1), (2, 3)), jax.random.key(3)
    y, _ = m.vae.apply(params, state, x, key)
    fc = params["decoder"]["fc"]
    z = x + jax.random.normal(key, (2, 3)) * jnp.exp(0.5 * x)
    np.testing.assert_allclose(y, z @ fc["kernel"] + fc["bias"][None], rtol=1e-6)
    assert not m.vae.stochastic  # the key is an input, not the target's rng


def test_initialize_carry_takes_a_key_as_old_flax_signed_it() -> None:
    m = build("""
    from aotflax import jax_utils


    class Encoder(nn.Module):
        def apply(self, xs):
            cell = nn.LSTMCell.shared(name="lstm")
            carry = nn.LSTMCell.initialize_carry(nn.make_rng(), (xs.shape[0],), 4)

            def step(carry, x):
                return cell(carry, x)

            (c, h), ys = jax_utils.scan_in_dim(step, carry, xs, axis=1)
            return h

    aot.target("enc", Encoder, xs=aot.f32[2, 6, 3])
    """)
    params, state = m.enc.init(jax.random.key(0))
    h, _ = m.enc.apply(params, state, jnp.ones((2, 6, 3)), rng=jax.random.key(1))
    assert h.shape == (2, 4) and np.isfinite(h).all()
