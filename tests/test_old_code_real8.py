"""What Flax's own seq2seq example (flax.nn, 2020) needed beyond rounds one to five.

Its LSTM encoder counts steps in the scan's carry, `init=(0, init_lstm_state)`: jax.lax.scan
makes the Python 0 a weakly typed int32 array.  Its step keeps each sequence's state past
its end with `*carried_state, = jnp.where(mask, new_state, state)`: Python's extended
unpacking of the array `jnp.where` makes of the two carries.  Each idiom is a small model of
our own, checked against Linen or jax itself with the same parameters.
"""

from __future__ import annotations

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build, build_errors, perturbed

RTOL, ATOL = 1e-6, 1e-6


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


_MASKED_SCAN = """
class Masked(nn.Module):
    def apply(self, xs, lengths):
        dense = nn.Dense.shared(features=3, name="d")
        h0 = jnp.zeros((xs.shape[0], 3))

        def step(carry, x):
            i, (a, b) = carry
            new = (jnp.tanh(dense(x) + a), b + 1.0)
            *kept, = jnp.where((i < lengths)[None, :, None], new, (a, b))
            return (i + 1, tuple(kept)), i

        (n, (a, b)), steps = jax.lax.scan(step, (0, (h0, h0)), jnp.swapaxes(xs, 0, 1))
        return n, a, b, steps

aot.target("t", Masked, xs=aot.f32[2, 5, 4], lengths=aot.i32[2])
"""


def test_a_scan_counting_in_its_carry_with_a_starred_where_equals_linen() -> None:
    m = build(_MASKED_SCAN)
    assert "jnp.asarray(0)" in m.__aotflax_text__  # the carry's Python 0, as scan makes it
    params = perturbed(m.t.init(jax.random.key(0))[0], 1)
    xs, lengths = _x(2, 5, 4), np.array([2, 5], np.int32)
    (n, a, b, steps), _ = m.t.apply(params, {}, xs, lengths)

    class Twin(linen.Module):
        @linen.compact
        def __call__(self, xs, lengths):
            dense = linen.Dense(3, name="d")
            a = b = jnp.zeros((xs.shape[0], 3))
            for i in range(xs.shape[1]):
                keep = (i < lengths)[:, None]
                a, b = (jnp.where(keep, jnp.tanh(dense(xs[:, i]) + a), a),
                        jnp.where(keep, b + 1.0, b))
            return a, b

    want_a, want_b = Twin().apply({"params": params}, xs, lengths)
    np.testing.assert_allclose(a, want_a, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(b, np.repeat(lengths[:, None], 3, 1).astype(np.float32))
    np.testing.assert_allclose(b, want_b)
    assert n == 5 and n.dtype == jnp.int32  # jax's own: a Python int carry is int32
    np.testing.assert_array_equal(steps, np.arange(5))
    # the same carry under jax itself
    ref = jax.lax.scan(lambda c, x: (c + 1, c), 0, jnp.zeros(5))
    assert ref[0].dtype == n.dtype


_STARRED = """
class Starred(nn.Module):
    def apply(self, x):
        first, *rest = x
        head, *mid, last = (4, 2, 3, 5)
        *all_rows, = x[:2]
        return nn.Dense(first, features=head, name="d") + last, jnp.stack(rest), \\
            len(mid), all_rows[1]

aot.target("t", Starred, x=aot.f32[3, 6])
"""


def test_extended_unpacking_of_arrays_and_static_tuples() -> None:
    m = build(_STARRED)
    params = perturbed(m.t.init(jax.random.key(0))[0], 2)
    x = _x(3, 6)
    (y, rest, n_mid, row), _ = m.t.apply(params, {}, x)
    d = params["d"]
    np.testing.assert_allclose(y, x[0] @ d["kernel"] + d["bias"] + 5, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(rest, x[1:])
    assert n_mid == 2
    np.testing.assert_array_equal(row, x[1])


@pytest.mark.parametrize("line, message", [
    ("*a, *b = x", "multiple starred expressions in assignment"),
    ("a, b, c, *d = x", "cannot unpack f32[2, 6] into 3 names"),
    ("a, *b = 3", "cannot unpack int 3"),
    ("a, b, *c = (1,)", "expected at least 2 values to unpack, got 1"),
])
def test_extended_unpacking_misuse_is_located(line: str, message: str) -> None:
    errors = build_errors(f"""
class M(nn.Module):
    def apply(self, x):
        {line}
        return x

aot.target("t", M, x=aot.f32[2, 6])
""")
    assert message in errors, errors
    assert ":8:" in errors.splitlines()[0]  # at the assignment
    assert "Traceback" not in errors


def test_jnp_pad_takes_constant_values_fourth_as_2020s_jax_did() -> None:
    # a torchvision-style ResNet port: `jnp.pad(x, pads, 'constant', (0, 0))`
    m = build("""
class Pad(nn.Module):
    def apply(self, x):
        return jnp.pad(x, [(1, 1), (0, 2)], 'constant', (3.0, 4.0))

aot.target("t", Pad, x=aot.f32[2, 3])
""")
    assert "constant_values=(3.0, 4.0)" in m.__aotflax_text__  # today's jnp.pad: a keyword
    x = _x(2, 3)
    y, _ = m.t.apply({}, {}, x)
    np.testing.assert_array_equal(y, np.pad(x, [(1, 1), (0, 2)], "constant",
                                            constant_values=(3.0, 4.0)))
    errors = build_errors("""
class Pad(nn.Module):
    def apply(self, x):
        return jnp.pad(x, 1, 'edge', 0)

aot.target("t", Pad, x=aot.f32[2, 3])
""")
    assert "mode 'edge' does not take constant_values" in errors, errors
    assert ":8:" in errors.splitlines()[0]


def test_numpy_type_codes_and_jnp_lax_as_hugging_faces_first_flax_bert_wrote_them() -> None:
    m = build("""
class Norm(nn.Module):
    def apply(self, x, ids):
        mean2 = jnp.mean(jnp.lax.square(x), axis=-1, keepdims=True)
        return jnp.lax.rsqrt(mean2 + 1e-6) * x, ids.astype('i4'), ids.astype('<f4')

aot.target("t", Norm, x=aot.f32[2, 3], ids=aot.i32[2])
""")
    x, ids = _x(2, 3), np.array([3, 4], np.int32)
    (y, as_i4, as_f4), _ = m.t.apply({}, {}, x, ids)
    want = jax.lax.rsqrt(jnp.mean(jax.lax.square(x), axis=-1, keepdims=True) + 1e-6) * x
    np.testing.assert_allclose(y, want, rtol=RTOL, atol=ATOL)
    assert as_i4.dtype == jnp.int32 and as_f4.dtype == jnp.float32
    errors = build_errors("""
class Norm(nn.Module):
    def apply(self, x):
        return x.astype('(2,)f4')

aot.target("t", Norm, x=aot.f32[2, 3])
""")
    assert "must be a dtype such as jnp.float32, got str '(2,)f4'" in errors, errors
