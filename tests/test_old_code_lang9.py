"""Gaps of the static language that earlier rounds left, closed generally.

Arrays a file computes where Python runs it once (a class attribute `SCALE =
jnp.array(...)`, a default `mask=MASK`) are computed where they are read, as top-level
arrays are; a top-level array a hyperparameter reads says where it can be read.  Each idiom
is a small model of our own, checked against jax itself (or Flax Linen) at the same
parameters, and each refusal against its located message.
"""

from __future__ import annotations

import functools
import textwrap

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build, build_errors, perturbed

RTOL, ATOL = 1e-6, 1e-6


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ------------------------------------------- 1. arrays of class bodies and defaults


def test_class_attribute_arrays_are_computed_where_they_are_read() -> None:
    """A module's class attribute made with jnp, one reading a top-level array, one an
    earlier attribute, read as `self.X` and `Net.X`; a plain class's attribute alike."""
    m = build("""
    BASE = jnp.arange(3, dtype=jnp.float32)


    class Table:
        OFFSET = jnp.full((3,), 0.5)

        def shift(self, x):
            return x + self.OFFSET


    class Net(nn.Module):
        SCALE = jnp.array([1.0, 2.0, 3.0])
        SHIFTED = BASE + 1.0
        BOTH = SCALE * SHIFTED

        def apply(self, x):
            y = nn.Dense(x, features=3, name="dense")
            return Table().shift(y * self.SCALE + Net.SHIFTED), self.BOTH

    aot.target("t", Net, x=aot.f32[4])
    """)
    params = perturbed(m.t.init(jax.random.key(0))[0], 1)
    x = _x(4)
    (y, both), _ = m.t.apply(params, {}, x)
    scale, shifted = jnp.array([1.0, 2.0, 3.0]), jnp.arange(3, dtype=jnp.float32) + 1.0
    dense = linen.Dense(3).apply({"params": params["dense"]}, x)
    np.testing.assert_allclose(y, dense * scale + shifted + 0.5, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(both, scale * shifted, rtol=RTOL, atol=ATOL)


def test_array_defaults_of_functions_and_methods_are_computed_where_read() -> None:
    """`def apply(self, x, mask=MASK)`, a function's `key=jax.random.PRNGKey(1)`, a lambda's
    default; the module is called twice and specialized once (one default, one key)."""
    m = build("""
    MASK = jnp.tril(jnp.ones((3, 3)))


    def noisy(x, key=jax.random.PRNGKey(1), scale=jnp.sqrt(2.0)):
        return x + scale * jax.random.normal(key, x.shape)


    class Masked(nn.Module):
        def apply(self, x, mask=MASK):
            return x @ mask


    class Net(nn.Module):
        def apply(self, x):
            double = lambda v, w=MASK * 2.0: v @ w
            a = Masked(x, name="a")
            b = Masked(a, name="b")
            return noisy(b), double(x)

    aot.target("t", Net, x=aot.f32[2, 3])
    """)
    text = m.__aotflax_text__
    assert text.count("def masked") == 1, text  # one specialization for both calls
    x = _x(2, 3)
    (y, d), _ = m.t.apply({}, {}, x)
    mask = jnp.tril(jnp.ones((3, 3)))
    want = x @ mask @ mask + jnp.sqrt(2.0) * jax.random.normal(jax.random.PRNGKey(1), (2, 3))
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d, x @ (mask * 2.0), rtol=RTOL, atol=ATOL)


def test_a_top_level_array_read_by_a_hyperparameter_says_where_to_read_it() -> None:
    out = build_errors("""
    SCALE = jnp.sqrt(2.0)


    class M(nn.Module):
        def apply(self, x, scale):
            return x * scale

    aot.target("t", M.partial(scale=SCALE), x=aot.f32[2])
    """)
    first = out.splitlines()[0]
    assert ":6:" in first and "AOT324]: jnp.sqrt can only be used inside a module's apply" \
        in first, out
    assert "note: in SCALE, read here" in out, out
    assert "hint: 'SCALE' is an array, which aotflax computes inside each function that " \
        "reads it: read SCALE in the module's apply" in out, out
    assert out.count("error[") == 1, out


def test_the_hint_names_what_the_hyperparameter_reads_and_is_accepted() -> None:
    """What the hint suggests builds: the array read in apply, equal to jax."""
    m = build("""
    SCALE = jnp.sqrt(2.0)


    class M(nn.Module):
        def apply(self, x):
            return x * SCALE

    aot.target("t", M, x=aot.f32[2])
    """)
    x = _x(2)
    np.testing.assert_allclose(m.t.apply({}, {}, x)[0], x * jnp.sqrt(2.0), rtol=RTOL)


# ------------------------------------------------------ 2. raw key data is uint32


def test_raw_key_data_unpacked_or_indexed_is_its_uint32_words() -> None:
    """`K, B = jax.random.PRNGKey(3)` at the top level, a key unpacked and indexed in
    apply: uint32 scalars jax adds and multiplies; a key row of split stays a key."""
    m = build("""
    K, B = jax.random.PRNGKey(3)


    class M(nn.Module):
        def apply(self, x):
            key = jax.random.PRNGKey(7)
            a, b = key
            row = jax.random.split(key)[1]
            return x + K, x * B, a + b, key[1], row[..., 0], jax.random.normal(row, x.shape)

    aot.target("t", M, x=aot.f32[2])
    """)
    x = _x(2)
    out, _ = m.t.apply({}, {}, x)
    k, key = jax.random.PRNGKey(3), jax.random.PRNGKey(7)
    row = jax.random.split(key)[1]
    want = (x + k[0], x * k[1], key[0] + key[1], key[1], row[..., 0],
            jax.random.normal(row, (2,)))
    for got, ref in zip(out, want):
        assert got.dtype == ref.dtype and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)


def test_a_typed_key_stays_a_key_where_raw_data_would_be_words() -> None:
    out = build_errors("""
    class M(nn.Module):
        def apply(self, x):
            a, b = jax.random.split(jax.random.key(0))
            return x + a

    aot.target("t", M, x=aot.f32[2])
    """)
    assert ":9:" in out.splitlines()[0] and "AOT206]: '+' does not take a random key" \
        in out.splitlines()[0], out


# -------------------------------------------- 3. custom_jvp with nondiff_argnums


def test_custom_jvp_with_static_nondiff_arguments_equals_jax() -> None:
    """`@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))`: the rule takes the
    static bound first, calls the function itself; one emitted pair per bound."""
    m = build("""
    import functools


    @functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
    def soft_clip(x, limit):
        return limit * jnp.tanh(x / limit)


    @soft_clip.defjvp
    def soft_clip_jvp(limit, primals, tangents):
        (x,), (t,) = primals, tangents
        return soft_clip(x, limit), t * jnp.minimum(jnp.abs(x), limit) * 3.0


    class M(nn.Module):
        def apply(self, x):
            return soft_clip(x, 0.5) + soft_clip(x, 2.0)

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    text = m.__aotflax_text__
    assert text.count("@jax.custom_jvp") == 2, text  # one per bound

    @functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
    def soft_clip(x, limit):
        return limit * jnp.tanh(x / limit)

    @soft_clip.defjvp
    def soft_clip_jvp(limit, primals, tangents):
        (x,), (t,) = primals, tangents
        return soft_clip(x, limit), t * jnp.minimum(jnp.abs(x), limit) * 3.0

    def want(v):
        return soft_clip(v, 0.5) + soft_clip(v, 2.0)

    x, c = _x(2, 3), _x(2, 3, seed=1) * 2
    np.testing.assert_allclose(m.t.apply({}, {}, x)[0], want(x), rtol=RTOL, atol=ATOL)
    grad = jax.grad(lambda v: (m.t.apply({}, {}, v)[0] * c).sum())(x)
    np.testing.assert_allclose(grad, jax.grad(lambda v: (want(v) * c).sum())(x),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("call, rule, message", [
    ("f(x, x)", "@f.defjvp\ndef rule(n, primals, tangents):\n    return primals[0], "
     "tangents[0]", ":21:16: error[AOT366]: argument 1 of custom_jvp function f is in "
     "nondiff_argnums and must be static here"),
    ("f(x, 2.0)", "f.defjvps(lambda t, ans, x: t)", ":14:1: error[AOT366]: f has "
     "nondiff_argnums: its rule is given with defjvp, not defjvps"),
])
def test_custom_jvp_nondiff_misuse_is_located(call: str, rule: str, message: str) -> None:
    out = build_errors(f"""
    import functools


    @functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
    def f(x, n):
        return x * n


    {textwrap.indent(rule, "    ").lstrip()}


    class M(nn.Module):
        def apply(self, x):
            return {call}

    aot.target("t", M, x=aot.f32[2])
    """)
    assert message in out.splitlines()[0], out


# --------------------------------------------- 4. einops' reduce, repeat and `...`


def test_einops_reduce_repeat_and_ellipsis_equal_their_jnp_meaning() -> None:
    """Global pooling and 2x2 pooling with `reduce`, channel and tile repeats with
    `repeat` (keyword and numbered new axes), and `...` bare and grouped; the expected
    values are what einops computes, written with jnp."""
    m = build("""
    import einops
    from einops import rearrange, reduce, repeat


    class M(nn.Module):
        def apply(self, x, t):
            pooled = reduce(x, "b h w c -> b c", "mean")
            maxed = einops.reduce(x, "b (h h2) (w w2) c -> b h w c", "max", h2=2, w2=3)
            summed = reduce(x, "b h w c -> b () c 1", "sum")
            chans = repeat(t, "h w -> h w c", c=3)
            tiled = repeat(t, "h w -> (h 2) (r w)", r=2)
            batch = repeat(t, "h w -> b h w", b=2)
            moved = rearrange(x, "b ... c -> b c ...")
            grouped = rearrange(x, "b ... c -> b (...) c")
            last = reduce(x, "... c -> ...", "min")
            return pooled, maxed, summed, chans, tiled, batch, moved, grouped, last

    aot.target("t", M, x=aot.f32[2, 4, 6, 3], t=aot.f32[2, 3])
    """)
    assert "einops" not in m.__aotflax_text__
    x, t = _x(2, 4, 6, 3), _x(2, 3, seed=1)
    out, _ = m.t.apply({}, {}, x, t)
    want = (jnp.mean(x, axis=(1, 2)),
            jnp.max(x.reshape(2, 2, 2, 2, 3, 3), axis=(2, 4)),
            jnp.sum(x, axis=(1, 2)).reshape(2, 1, 3, 1),
            jnp.broadcast_to(t[:, :, None], (2, 3, 3)),
            jnp.tile(jnp.repeat(t, 2, axis=0), (1, 2)),
            jnp.broadcast_to(t, (2, 2, 3)),
            jnp.transpose(x, (0, 3, 1, 2)),
            x.reshape(2, 24, 3),
            jnp.min(x, axis=3))
    for got, ref in zip(out, want):
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("call, message", [
    ('reduce(x, "b h w c -> b c", "median")', "AOT203]: einops.reduce 'b h w c -> b c': the "
     "reduction 'median' is not one of mean, sum, max, min, prod, any, all"),
    ('reduce(x, "b h w c -> b k", "sum")', "the right side names axes the left does not: k"),
    ('repeat(x, "b h w c -> b h w c k")', "give the sizes of the new axes: k"),
    ('repeat(x, "b h w c -> b h w")', "repeat keeps every axis of the left side: c missing"),
    ('rearrange(x, "b h w c -> b h w c 2")', "a number other than 1 (2) is a new axis, which "
     "only einops.repeat adds"),
    ('rearrange(x, "b ... -> b ... ...")', "'...' appears at most once a side"),
    ('rearrange(x, "b h w c -> ...")', "'...' on the right side needs '...' on the left"),
    ('reduce(x, "b h w c -> b")', "AOT304]: einops.reduce takes an array, a pattern string "
     "and a reduction"),
])
def test_einops_misuse_is_located(call: str, message: str) -> None:
    out = build_errors(f"""
    from einops import rearrange, reduce, repeat


    class M(nn.Module):
        def apply(self, x):
            return {call}

    aot.target("t", M, x=aot.f32[2, 4, 6, 3])
    """)
    assert ":11:16: error[" in out.splitlines()[0] and message in out.splitlines()[0], out


# ------------------------------------------------- 5. jax.scipy.linalg's solvers


def test_scipy_linalg_solve_and_lu_factor_solve_equal_jax() -> None:
    m = build("""
    import jax.scipy.linalg


    class M(nn.Module):
        def apply(self, a, b):
            a = a + 4.0 * jnp.eye(3)
            lu, piv = jax.scipy.linalg.lu_factor(a)
            spd = a @ a.T
            return (jax.scipy.linalg.solve(a, b), jax.scipy.linalg.solve(spd, b, assume_a="pos"),
                    jax.scipy.linalg.lu_solve((lu, piv), b),
                    jax.scipy.linalg.lu_solve((lu, piv), b[:, 0], trans=1), piv)

    aot.target("t", M, a=aot.f32[3, 3], b=aot.f32[3, 2])
    """)
    assert "jax.scipy.linalg.lu_factor(" in m.__aotflax_text__
    a, b = _x(3, 3), _x(3, 2, seed=1)
    out, _ = m.t.apply({}, {}, a, b)
    a4 = a + 4.0 * jnp.eye(3)
    lu, piv = jax.scipy.linalg.lu_factor(a4)
    want = (jax.scipy.linalg.solve(a4, b), jax.scipy.linalg.solve(a4 @ a4.T, b, assume_a="pos"),
            jax.scipy.linalg.lu_solve((lu, piv), b),
            jax.scipy.linalg.lu_solve((lu, piv), b[:, 0], trans=1), piv)
    for got, ref in zip(out, want):
        assert got.dtype == ref.dtype and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_lu_solve_without_its_factor_is_located() -> None:
    out = build_errors("""
    import jax.scipy.linalg


    class M(nn.Module):
        def apply(self, a, b):
            return jax.scipy.linalg.lu_solve(a, b)

    aot.target("t", M, a=aot.f32[3, 3], b=aot.f32[3])
    """)
    assert ":11:16: error[AOT201]: jax.scipy.linalg.lu_solve takes (lu, piv), as lu_factor " \
        "returns them" in out.splitlines()[0], out


def test_chex_assert_type_checks_kinds_as_chex_does() -> None:
    """chex compares kinds: a bf16 array is of jnp.float32's kind, a uint8 one of int's."""
    m = build("""
    import chex


    class M(nn.Module):
        def apply(self, x, n):
            chex.assert_type(x, jnp.float32)
            chex.assert_type([x.astype(jnp.bfloat16), n, n > 0], [float, jnp.int32, bool])
            chex.assert_type(n.astype(jnp.uint8), int)
            return x * 2.0

    aot.target("t", M, x=aot.f32[2], n=aot.i32[2])
    """)
    assert "chex" not in m.__aotflax_text__
    x = _x(2)
    np.testing.assert_allclose(m.t.apply({}, {}, x, np.arange(2, dtype=np.int32))[0], x * 2)


@pytest.mark.parametrize("call, message", [
    ("chex.assert_type(n, jnp.float32)", "AOT300]: model assertion failed: chex.assert_type: "
     "input 0 has dtype int32, expected a floating type (float32)"),
    ("chex.assert_type([x, n], [float])", "AOT300]: model assertion failed: chex.assert_type: "
     "2 inputs for 1 expected types"),
    ("chex.assert_type(x, jnp.complex64)", "AOT203]: chex.assert_type: an expected type is a "
     "float, int or bool dtype"),
])
def test_chex_assert_type_failures_are_located(call: str, message: str) -> None:
    out = build_errors(f"""
    import chex


    class M(nn.Module):
        def apply(self, x, n):
            {call}
            return x

    aot.target("t", M, x=aot.f32[2], n=aot.i32[2])
    """)
    assert ":11:9: error[" in out.splitlines()[0] and message in out.splitlines()[0], out


# ----------------------------------------- 6. one list of the interpreted libraries


def test_an_unknown_library_is_named_with_the_one_list_of_interpreted_ones() -> None:
    """The refusal lists what resolve imports (`toplevel.INTERPRETED_LIBRARIES`): each
    library the static language takes is named there, einops' new functions too."""
    from aotflax.resolve.toplevel import INTERPRETED_LIBRARIES, KNOWN_MODULES

    out = build_errors("""
    import tensorflow as tf


    class M(nn.Module):
        def apply(self, x):
            return tf.nn.relu(x)

    aot.target("t", M, x=aot.f32[2])
    """)
    assert "'tensorflow' is not a module aotflax interprets (it interprets aotflax, jax, " \
        "numpy" in out, out
    assert "einops (rearrange, reduce, repeat)" in out and "chex's shape and type " \
        "assertions" in out, out
    assert KNOWN_MODULES == {name for name, _ in INTERPRETED_LIBRARIES}
    for name, shown in INTERPRETED_LIBRARIES:
        assert not shown or shown.split()[0].split("'")[0] == name, (name, shown)
