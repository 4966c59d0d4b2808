"""What real 2020 flax.nn files wrote around their layers, found building more of them.

Python's `operator` functions handed to `functools.reduce` (a positional encoding that
joins lists with `operator.iconcat`, a size computed with `operator.mul`), and lists
where an array goes (`jnp.broadcast_to([1e10], shape)`, which the JAX of 2020 took).
Each idiom is a small model of our own, checked against jax or numpy.
"""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build, build_errors

RTOL, ATOL = 1e-6, 1e-6


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_operator_functions_on_static_values_and_arrays() -> None:
    m = build("""
    import functools
    import operator


    class M(nn.Module):
        def apply(self, x, y, degree=3):
            terms = functools.reduce(operator.iconcat,
                                     [[2 ** i * x, 2 ** i * x + 1.0] for i in range(degree)], [])
            size = functools.reduce(operator.mul, x.shape, 1)
            joined = operator.concat((1, 2), (3,))
            scaled = operator.truediv(operator.add(x, y), size)
            return (jnp.concatenate(terms, axis=-1), scaled, operator.neg(y),
                    operator.matmul(x, y.T), operator.lt(x, y), joined)

    aot.target("t", M, x=aot.f32[2, 3], y=aot.f32[2, 3])
    """)
    x, y = _x(2, 3), _x(2, 3, seed=1)
    (enc, scaled, neg, mm, lt, joined), _ = m.t.apply({}, {}, x, y)
    want = functools.reduce(operator.iconcat, [[2 ** i * x, 2 ** i * x + 1.0] for i in range(3)],
                            [])
    np.testing.assert_allclose(enc, np.concatenate(want, axis=-1), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(scaled, (x + y) / 6, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(neg, -y)
    np.testing.assert_allclose(mm, x @ y.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(lt, x < y)
    assert tuple(int(v) for v in joined) == (1, 2, 3)


@pytest.mark.parametrize("call, message", [
    ("operator.add(x)", "AOT301]: operator.add takes 2 positional arguments, got 1"),
    ("operator.neg(a=x)", "AOT301]: operator.neg takes 1 positional argument, got 1 "
     "(keywords are not taken)"),
    ("operator.concat(x, x)", "AOT344]: operator.concat joins sequences, got"),
    ("operator.not_(x)", "AOT335]: 'not' needs a static operand"),
    ("operator.itemgetter(0)(x)", "AOT346]"),
])
def test_operator_misuse_is_located(call: str, message: str) -> None:
    out = build_errors(f"""
    import operator


    class M(nn.Module):
        def apply(self, x):
            return {call}

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    assert message in out and ":11:" in out, out


def test_a_list_where_an_array_goes_is_an_array() -> None:
    """`jnp.broadcast_to([1e10], shape)` and a list in jnp's elementwise functions: the
    emitted call gets `jnp.asarray` of it, as the JAX of 2020 converted it."""
    m = build("""
    class M(nn.Module):
        def apply(self, z):
            far = jnp.broadcast_to([1e10], z[..., :1].shape)
            gaps = jnp.concatenate([z[..., 1:] - z[..., :-1], far], -1)
            return (gaps, jnp.maximum(z, [[0.5, 0.0, -0.5, 1.0]]),
                    jnp.where(z > 0, [[1.0, 2.0, 3.0, 4.0]], z))

    aot.target("t", M, z=aot.f32[3, 4])
    """)
    assert "jnp.asarray([10000000000.0])" in m.__aotflax_text__
    z = _x(3, 4)
    (gaps, mx, wh), _ = m.t.apply({}, {}, z)
    want = np.concatenate([z[..., 1:] - z[..., :-1], np.full((3, 1), 1e10, np.float32)], -1)
    np.testing.assert_allclose(gaps, want, rtol=RTOL)
    np.testing.assert_allclose(mx, np.maximum(z, [[0.5, 0.0, -0.5, 1.0]]))
    np.testing.assert_allclose(wh, np.where(z > 0, [[1.0, 2.0, 3.0, 4.0]], z))
    assert jax.jit(lambda v: m.t.apply({}, {}, v)[0])(jnp.asarray(z))[0].shape == (3, 4)
