"""More of what real 2020-2021 flax.nn files wrote, found building more of them.

jax's old keyword names (`jnp.clip(x, a_min=, a_max=)`), array methods (`x.repeat`), a
random key made at the top level of a file and used by the model, flax.nn v0.1's
convolution arguments, module classmethods, `jax.custom_vjp` with `nondiff_argnums`,
`enum.Enum` classes of the model file, determinants and inverses (normalizing flows),
chex's shape assertions and einops' `rearrange`.  Each idiom is a small model of our
own, checked against jax, numpy or Flax Linen at the same parameters.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from helpers import build, build_errors

RTOL, ATOL = 1e-6, 1e-6


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------- 1. old jnp spellings


def test_clip_takes_its_old_keywords_and_arrays_repeat() -> None:
    m = build("""
    class M(nn.Module):
        def apply(self, x):
            return (jnp.clip(x, a_min=-0.5, a_max=0.5), jnp.clip(x, a_max=0.1),
                    x.clip(a_min=0.0), x.repeat(2, axis=1), x.repeat(3), jnp.clip(x, -1, 1))

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    assert "a_min" not in m.__aotflax_text__ and "a_max" not in m.__aotflax_text__
    x = _x(2, 3)
    out, _ = m.t.apply({}, {}, x)
    want = (np.clip(x, -0.5, 0.5), np.minimum(x, 0.1), np.maximum(x, 0.0), x.repeat(2, axis=1),
            x.repeat(3), np.clip(x, -1, 1))
    for got, w in zip(out, want):
        np.testing.assert_allclose(got, w, rtol=RTOL, atol=ATOL)


def test_clip_with_a_bound_and_its_old_name_is_located() -> None:
    out = build_errors("""
    class M(nn.Module):
        def apply(self, x):
            return jnp.clip(x, 0.0, a_min=1.0)

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    assert ":8:16: error[AOT203]: jnp.clip: give min or a_min (its old name), not both" in out, \
        out


def test_a_key_made_at_the_top_level_is_replayed_where_used() -> None:
    """`rng = jax.random.PRNGKey(0)` at module level (split and unpacked there too), read
    by a module and handed to another as a hyperparameter, as scripts and notebooks did."""
    m = build("""
    RNG = jax.random.PRNGKey(0)
    R1, R2 = jax.random.split(RNG)
    KEYS = jax.random.split(jax.random.fold_in(RNG, 3), 4)
    TYPED = jax.random.key(5)


    class Noise(nn.Module):
        def apply(self, x, key):
            return x + jax.random.normal(key, x.shape)


    class M(nn.Module):
        def apply(self, x):
            a = jax.random.uniform(RNG, x.shape)
            b = Noise(x, key=R2)
            c = jax.random.normal(KEYS[2], x.shape)
            d = jax.random.bernoulli(TYPED, 0.5, x.shape)
            e = nn.dropout(x, 0.5, rng=R1)
            return a, b, c, d, e

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    x = _x(2, 3)
    (a, b, c, d, e), _ = m.t.apply({}, {}, x)
    rng = jax.random.PRNGKey(0)
    r1, r2 = jax.random.split(rng)
    keys = jax.random.split(jax.random.fold_in(rng, 3), 4)
    np.testing.assert_array_equal(a, jax.random.uniform(rng, (2, 3)))
    np.testing.assert_allclose(b, x + jax.random.normal(r2, (2, 3)), rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(c, jax.random.normal(keys[2], (2, 3)))
    np.testing.assert_array_equal(d, jax.random.bernoulli(jax.random.key(5), 0.5, (2, 3)))
    keep = jax.random.bernoulli(r1, 0.5, (2, 3))
    np.testing.assert_allclose(e, np.where(keep, x / 0.5, 0), rtol=RTOL, atol=ATOL)
    assert not m.t.stochastic


@pytest.mark.parametrize("line, message", [
    ("K = jax.random.PRNGKey(1.5)", ":6:5: error[AOT324]: jax.random.PRNGKey at the top level "
     "of a file needs a static int seed, got float 1.5"),
    ("K = jax.random.split(jax.random.PRNGKey(0), 3)[5]", ":6:5: error[AOT345]: cannot index "
     "random key jax.random.split(jax.random.PRNGKey(0), 3) (made at the top level) with 5"),
    ("K = jax.random.normal(jax.random.PRNGKey(0), (2,))", ":6:5: error[AOT324]: "
     "jax.random.normal can only be used inside a module's apply"),
    ("K, B = jax.random.PRNGKey(0)", ":6:1: error[AOT333]: cannot unpack random key"),
])
def test_top_level_key_misuse_is_located(line: str, message: str) -> None:
    out = build_errors(f"""
    {line}


    class M(nn.Module):
        def apply(self, x):
            return x + K

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    assert message in out, out


# ------------------------------------------------------------- 2. flax.nn v0.1 conv names


def test_conv_takes_lax_names_of_its_dilations() -> None:
    """`nn.Conv(x, ..., lhs_dilation=, rhs_dilation=)`: Linen's Conv with input_dilation and
    kernel_dilation at the same parameters."""
    import flax.linen as linen

    m = build("""
    class M(nn.Module):
        def apply(self, x):
            y = nn.Conv(x, 4, (3, 3), rhs_dilation=(2, 2), padding="SAME", name="a")
            return nn.Conv(y, 2, (2, 2), lhs_dilation=(2, 1), padding=((1, 1), (0, 1)),
                           name="b")

    aot.target("t", M, x=aot.f32[1, 6, 6, 3])
    """)
    assert "lhs_dilation=(2, 1)" in m.__aotflax_text__
    params = m.t.init(jax.random.key(0))[0]
    x = _x(1, 6, 6, 3)
    got, _ = m.t.apply(params, {}, x)

    class Ref(linen.Module):
        @linen.compact
        def __call__(self, x):
            y = linen.Conv(4, (3, 3), kernel_dilation=(2, 2), padding="SAME", name="a")(x)
            return linen.Conv(2, (2, 2), input_dilation=(2, 1), padding=((1, 1), (0, 1)),
                              name="b")(y)

    want = Ref().apply({"params": params}, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_conv_dilation_under_both_names_is_located() -> None:
    out = build_errors("""
    class M(nn.Module):
        def apply(self, x):
            return nn.Conv(x, 4, (3, 3), kernel_dilation=2, rhs_dilation=(2, 2))

    aot.target("t", M, x=aot.f32[1, 6, 6, 3])
    """)
    assert (":8:16: error[AOT203]: nn.Conv: give kernel_dilation or rhs_dilation (its old "
            "name), not both") in out, out
