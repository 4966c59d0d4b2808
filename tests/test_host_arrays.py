"""numpy in model code: host arrays emitted as numpy code, numpy on scalars at build time.

Real flax.nn code builds position tables with numpy (`np.zeros`, `np.arange(...)[:, None]`,
`np.sin`, slice assignment) inside initializers and inside apply.  The generated code runs
the same numpy calls at trace time, so the tables equal what numpy computes, bit for bit;
numpy's dtypes (float64, int64) hold until the table meets jnp, as under Flax.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build, build_errors, emit

SINUSOIDAL = """
import numpy as np


def sinusoidal_init(max_len=16):
    def init(key, shape, dtype=np.float32):
        del key, dtype
        d_feature = shape[-1]
        pe = np.zeros((max_len, d_feature), dtype=np.float32)
        position = np.arange(0, max_len)[:, np.newaxis]
        div_term = np.exp(np.arange(0, d_feature, 2) * -(np.log(10000.0) / d_feature))
        pe[:, 0::2] = np.sin(position * div_term)
        pe[:, 1::2] = np.cos(position * div_term)
        pe = pe[np.newaxis, :, :]
        return jnp.array(pe)
    return init


def fixed_table(max_len, d_feature, min_scale=1.0, max_scale=10000.0):
    pe = np.zeros((max_len, d_feature), dtype=np.float32)
    position = np.arange(0, max_len)[:, np.newaxis]
    scale_factor = -np.log(max_scale / min_scale) / (d_feature // 2 - 1)
    div_term = min_scale * np.exp(np.arange(0, d_feature // 2) * scale_factor)
    pe[:, :d_feature // 2] = np.sin(position * div_term)
    pe[:, d_feature // 2: 2 * (d_feature // 2)] = np.cos(position * div_term)
    return jnp.array(pe[np.newaxis, :, :])


class Learned(nn.Module):
    def apply(self, x, max_len=16):
        table = self.param("pos_embedding", (1, max_len, x.shape[-1]),
                           sinusoidal_init(max_len=max_len))
        return x + table[:, :x.shape[1], :]


class Fixed(nn.Module):
    def apply(self, x, max_len=16):
        table = fixed_table(max_len, x.shape[-1])
        return x + table[:, :x.shape[1], :]


aot.target("learned", Learned, x=aot.f32[2, 5, 8])
aot.target("fixed", Fixed, x=aot.f32[2, 5, 8])
"""


def _numpy_sinusoidal(max_len: int, d: int) -> np.ndarray:
    pe = np.zeros((max_len, d), dtype=np.float32)
    position = np.arange(0, max_len)[:, np.newaxis]
    div_term = np.exp(np.arange(0, d, 2) * -(np.log(10000.0) / d))
    pe[:, 0::2] = np.sin(position * div_term)
    pe[:, 1::2] = np.cos(position * div_term)
    return pe[np.newaxis, :, :]


def _numpy_fixed(max_len: int, d: int) -> np.ndarray:
    pe = np.zeros((max_len, d), dtype=np.float32)
    position = np.arange(0, max_len)[:, np.newaxis]
    scale_factor = -np.log(10000.0 / 1.0) / (d // 2 - 1)
    div_term = 1.0 * np.exp(np.arange(0, d // 2) * scale_factor)
    pe[:, :d // 2] = np.sin(position * div_term)
    pe[:, d // 2: 2 * (d // 2)] = np.cos(position * div_term)
    return pe[np.newaxis, :, :]


@pytest.fixture(scope="module")
def tables():
    return build(SINUSOIDAL)


def test_sinusoidal_initializer_equals_numpy_bit_for_bit(tables):
    params, _ = tables.learned.init(jax.random.key(0))
    got = np.asarray(params["pos_embedding"])
    want = _numpy_sinusoidal(16, 8)
    assert got.dtype == np.float32 and got.shape == (1, 16, 8)
    assert np.array_equal(got, want)
    text = tables.__aotflax_text__
    # numpy calls are emitted as numpy calls (numpy computes them at trace time)
    assert "np.sin(" in text and "np.zeros((16, 8), dtype=np.float32)" in text
    assert "i64[16] (numpy)" in text and "f64[4] (numpy)" in text


def test_table_built_inside_apply_equals_numpy(tables):
    x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype(np.float32)
    out, _ = tables.fixed.apply({}, {}, x)
    want = x + _numpy_fixed(16, 8)[:, :5, :]
    assert out.dtype == np.float32
    assert np.array_equal(np.asarray(out), want)


def test_slice_assignment_is_in_place_like_numpy():
    """Views and aliases see a store, as they do in numpy (stores are emitted in place)."""
    m = build("""
    import numpy as np

    class Net(nn.Module):
        def apply(self, x):
            a = np.zeros((2, 3))
            alias = a
            row = a[0]
            row[:] = 1.0
            a[1, 1:] = np.arange(2) + 5
            alias += 0.5
            a[0] *= 2
            return x + jnp.asarray(alias), jnp.asarray(row)

    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    a = np.zeros((2, 3))
    alias = a
    row = a[0]
    row[:] = 1.0
    a[1, 1:] = np.arange(2) + 5
    alias += 0.5
    a[0] *= 2
    (out, got_row), _ = m.net.apply({}, {}, np.zeros((2, 3), np.float32))
    assert np.array_equal(np.asarray(out), a.astype(np.float32))
    assert np.array_equal(np.asarray(got_row), row.astype(np.float32))


NUMPY_DTYPES = """
    import numpy as np

    class Net(nn.Module):
        def apply(self, x):
            ids = np.arange(6).reshape(2, 3)
            half = ids / 4
            small = np.ones((2, 3), dtype=np.float32) * 2.0
            mask = ids > 2
            total = ids.sum(axis=0, keepdims=True)
            return x + half, x * small, jnp.where(mask, x, 0.0), x + total

    aot.target("net", Net, x=aot.f32[2, 3])
    """


def test_numpy_dtypes_hold_until_jnp():
    """int64 and float64 are numpy's; JAX narrows them where the table meets jnp."""
    text, program = emit(NUMPY_DTYPES)
    assert "i64[2, 3] (numpy)" in text and "f64[2, 3] (numpy)" in text
    assert "f32[2, 3] (numpy)" in text and "bool[2, 3] (numpy)" in text
    m = build(NUMPY_DTYPES)
    x = np.arange(6, dtype=np.float32).reshape(2, 3) + 0.25
    outs, _ = m.net.apply({}, {}, x)
    ids = np.arange(6).reshape(2, 3)
    want = (jnp.asarray(x) + ids / 4, jnp.asarray(x) * (np.ones((2, 3), np.float32) * 2.0),
            jnp.where(ids > 2, x, 0.0), jnp.asarray(x) + ids.sum(axis=0, keepdims=True))
    for got, ref in zip(outs, want):
        assert got.dtype == ref.dtype
        np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))


def test_numpy_on_scalars_is_static_and_strongly_typed():
    """np.sqrt(d) is a numpy float64 scalar: a hyperparameter, and strong in jnp arithmetic."""
    m = build("""
    import numpy as np

    class Net(nn.Module):
        def apply(self, x):
            width = np.prod((2, 3))
            scale = 1.0 / np.sqrt(x.shape[-1])
            y = nn.Dense(x.astype(jnp.float32), width,
                         kernel_init=nn.initializers.normal(stddev=scale))
            return y, x / np.sqrt(4.0), x * 0.5

    aot.target("net", Net, x=aot.bf16[2, 4])
    """)
    params, _ = m.net.init(jax.random.key(0))
    assert params["Dense_0"]["kernel"].shape == (4, 6)
    x = jnp.ones((2, 4), jnp.bfloat16)
    (_, scaled, weak), _ = m.net.apply(params, {}, x)
    assert scaled.dtype == (x / np.sqrt(4.0)).dtype == jnp.float32  # as JAX: numpy is strong
    assert weak.dtype == jnp.bfloat16
    text = m.__aotflax_text__
    assert "np.float64(2.0)" in text


def test_host_arrays_cross_into_layers_and_modules_as_arrays():
    m = build("""
    import numpy as np

    class Child(nn.Module):
        def apply(self, table):
            return table * 2, np.ones(3)

    class Net(nn.Module):
        def apply(self, x):
            table = np.arange(3) / 2
            doubled, ones = Child(table)
            return nn.Dense(np.ones((2, 3)), 4), doubled + x, ones

    aot.target("net", Net, x=aot.f32[3])
    """)
    params, _ = m.net.init(jax.random.key(0))
    (dense, doubled, ones), _ = m.net.apply(params, {}, np.zeros(3, np.float32))
    assert dense.dtype == doubled.dtype == ones.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(doubled), np.arange(3) / 2 * 2)
    assert "jnp.asarray(" in m.__aotflax_text__


def test_methods_and_attributes_of_numpy_arrays():
    m = build("""
    import numpy as np

    class Net(nn.Module):
        def apply(self, x):
            t = np.arange(12).reshape(3, 4).astype(np.float32)
            u = t.T.copy()
            return (x + jnp.asarray(u.mean(axis=1)), jnp.asarray(t.max()),
                    jnp.asarray(np.concatenate([t, t], axis=0).shape[0] * t.dtype.itemsize))

    aot.target("net", Net, x=aot.f32[4])
    """)
    (a, b, c), _ = m.net.apply({}, {}, np.zeros(4, np.float32))
    t = np.arange(12).reshape(3, 4).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(a), t.T.mean(axis=1))
    assert float(b) == 11.0 and int(c) == 24


def test_numpy_misuse_is_located():
    errors = build_errors("""
    import numpy as np

    TABLE = np.zeros((2, 2))

    class Net(nn.Module):
        def apply(self, x):
            a = np.sin(x)
            b = np.zeros((100000, 100000))
            c = np.arange(4)
            c[:2] = np.ones(3)
            c += 0.5
            e = np.arange(4)
            d = e[e > 1]
            f = np.arange(None, 8, 2)
            if e.sum() > 1:
                pass
            return x

    class UsesTable(nn.Module):
        def apply(self, x, table):
            return x

    aot.target("net", Net, x=aot.f32[2, 2])
    aot.target("table", UsesTable.partial(table=TABLE), x=aot.f32[2, 2])
    """)
    assert "np.sin runs numpy, which cannot take the array f32[2, 2]" in errors
    assert "use the jnp function of the same name" in errors
    assert "10,000,000,000 elements" in errors
    assert "cannot assign a value of shape (3,) to a part of shape (2,)" in errors
    assert "which numpy does not store in place" in errors
    assert "boolean mask indexing" in errors
    assert "conditions must be static" in errors
    assert "np.zeros makes a numpy array: it can be used only inside" in errors
    assert "np.arange needs static numbers as bounds, got None" in errors  # (fuzzed)


def test_np_bool_is_the_bool_dtype():
    """seq2seq's `jnp.zeros(batch_size, dtype=np.bool)`: numpy 1.x's alias of Python's bool
    (removed in numpy 1.24, back as np.bool_ in numpy 2) is the bool dtype everywhere."""
    m = build("""
    import numpy as np

    class Net(nn.Module):
        def apply(self, x):
            done = jnp.zeros(x.shape[0], dtype=np.bool)
            table = np.zeros(3, np.bool)
            return done, x.astype(np.bool), jnp.where(np.bool(1), x, 0.0), table

    aot.target("net", Net, x=aot.f32[2, 5])
    """)
    x = jnp.asarray(np.arange(10.0).reshape(2, 5))
    (done, mask, same, table), _ = m.net.apply({}, {}, x)
    assert done.dtype == mask.dtype == table.dtype == jnp.bool_
    np.testing.assert_array_equal(done, np.zeros(2, bool))
    np.testing.assert_array_equal(mask, np.asarray(x).astype(bool))
    np.testing.assert_array_equal(same, x)
    np.testing.assert_array_equal(table, np.zeros(3, bool))


STATIC_INTS = """
import numpy as onp
from jax import lax


class UpCrop(nn.Module):
    def apply(self, x, features, kernel_size=(2, 3), strides=(2, 2)):
        kernel = self.param("kernel", kernel_size + (x.shape[-1], features),
                            nn.initializers.lecun_normal())
        k_h, k_w = kernel_size
        out_h, out_w = onp.multiply(strides, x.shape[1:3])
        y = lax.conv_transpose(x, kernel, strides, "VALID")
        return y[:, :out_h, (k_w - 1) // 2:out_w + (k_w - 1) // 2, :]


class Net(nn.Module):
    def apply(self, x):
        sizes = onp.array(x.shape[1:3]) * 2
        total = 0
        for n in sizes:
            total += n
        y = UpCrop(x, 4)
        return y, y[:, :sizes[0] // 2], jnp.zeros((total,))

aot.target("net", Net, x=aot.f32[1, 4, 5, 3])
"""


def test_numpy_on_static_ints_gives_static_sizes():
    """PixelCNN++'s `out_h, out_w = onp.multiply(strides, inputs.shape[1:3])`: numpy on
    static ints is an array whose items Python code reads as static sizes (slice bounds,
    loops), as they were under Flax; compared with the same model in Linen."""
    import flax.linen as linen

    class LUpCrop(linen.Module):
        @linen.compact
        def __call__(self, x):
            kernel = self.param("kernel", jax.nn.initializers.lecun_normal(), (2, 3, 3, 4))
            out_h, out_w = np.multiply((2, 2), x.shape[1:3])
            y = jax.lax.conv_transpose(x, kernel, (2, 2), "VALID")
            return y[:, :out_h, 1:out_w + 1, :]

    m = build(STATIC_INTS)
    params, _ = m.net.init(jax.random.key(0))
    x = np.random.default_rng(0).standard_normal((1, 4, 5, 3)).astype(np.float32)
    (y, half, zeros), _ = m.net.apply(params, {}, x)
    want = LUpCrop().apply({"params": params["UpCrop_0"]}, x)
    assert y.shape == (1, 8, 10, 4) and half.shape == (1, 4, 10, 4) and zeros.shape == (18,)
    np.testing.assert_allclose(np.asarray(y), np.asarray(want), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(half), np.asarray(want)[:, :4])
    # the items keep the code that computes them, so the function reads its sizes from its
    # input as a person writes it (and instances of other sizes could share it)
    up = m.__aotflax_text__.split("def up_crop(")[1].split("\ndef ")[0]
    assert "out_h = 2 * x.shape[1]" in up and "y[:, :out_h, 1:out_w + 1, :]" in up


def test_a_numpy_store_makes_static_items_unknown():
    """After any numpy store (which may go through a view), an array's items are no longer
    known at build time: a slice bound read from it is a located error, not a stale size."""
    errors = build_errors("""
    import numpy as np

    class Net(nn.Module):
        def apply(self, x):
            sizes = np.multiply((2, 2), x.shape)
            view = sizes[:1]
            view[0] = 1
            return x[:sizes[0]]

    aot.target("net", Net, x=aot.f32[4, 4])
    """)
    assert "error[AOT343]: slice bounds must be static ints, got array i64[] (numpy)" in errors
