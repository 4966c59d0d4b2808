"""Operations real flax.nn code uses: random keys, unpacking, `x.at[...]`, padding,
dynamic slices, convolutions as functions, segment sums, special functions,
`map` / `filter`, and `nn.initializers`; each against jax, and each misuse as a
located error.

(Every entry also has a value case in test_ops_coverage.py; these tests cover
the statement-level forms and the errors.)
"""

from __future__ import annotations

import inspect
import zlib

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build, build_errors

from aotflax.ops import initializers as inits

X = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)


def _run(source: str, *inputs: np.ndarray, rng=None):
    target = build(source).TARGETS["t"]
    kwargs = {} if rng is None else {"rng": rng}
    out, _ = jax.jit(target.apply_fn)({}, {}, *inputs, **kwargs)
    return out, target


# ------------------------------------------------------------------ random keys


def test_split_unpacks_into_keys_and_draws_like_jax() -> None:
    out, _ = _run("""
        class M(nn.Module):
            def apply(self, x):
                rng = jax.random.PRNGKey(0)
                rng, key = jax.random.split(rng)
                a, b, c = jax.random.split(key, num=3)
                noise = jax.random.normal(b, x.shape)
                mask = jax.random.bernoulli(c, 0.5, x.shape)
                k = jax.random.fold_in(rng, 3)
                return x + noise, mask, jax.random.uniform(k, (2,)), jax.random.key_data(a)
        aot.target("t", M, x=aot.f32[3, 4])
    """, X)
    rng, key = jax.random.split(jax.random.PRNGKey(0))
    a, b, c = jax.random.split(key, num=3)
    want = (X + jax.random.normal(b, X.shape), jax.random.bernoulli(c, 0.5, X.shape),
            jax.random.uniform(jax.random.fold_in(rng, 3), (2,)), a)
    for got, w in zip(out, want):
        np.testing.assert_allclose(got, w, rtol=1e-6)


def test_typed_keys_from_key_and_make_rng() -> None:
    out, target = _run("""
        class M(nn.Module):
            def apply(self, x):
                k1, k2 = jax.random.split(nn.make_rng())
                t = jax.random.split(jax.random.key(7), 4)[2]
                return (jax.random.normal(k1, (2,)), jax.random.normal(k2, (2,)),
                        jax.random.randint(t, (3,), 0, 5))
        aot.target("t", M, x=aot.f32[3, 4])
    """, X, rng=jax.random.key(1))
    assert target.stochastic
    assert not np.array_equal(out[0], out[1])  # two different keys
    want = jax.random.randint(jax.random.split(jax.random.key(7), 4)[2], (3,), 0, 5)
    np.testing.assert_array_equal(out[2], want)


def test_random_key_misuse_is_located() -> None:
    errors = build_errors("""
        class M(nn.Module):
            def apply(self, x):
                keys = jax.random.split(jax.random.PRNGKey(0), 3)
                a = jax.random.normal(keys, (2,))
                b = jax.random.normal(x, (2,))
                c = jax.random.fold_in(jax.random.key(0), 1.5)
                d = jax.random.PRNGKey(0.5)
                e = jax.random.randint(jax.random.key(0), (2,), 0, 3, dtype=jnp.float32)
                f = jax.random.categorical(jax.random.key(0), jnp.ones((3,), jnp.int32))
                g = jax.random.choice(jax.random.key(0), 3, (5,), replace=False)
                h = keys + 1
                k1, k2 = jax.random.split(jax.random.key(0), 3)
                return x
        aot.target("t", M, x=aot.f32[3, 4])
    """)
    assert "takes a single key, got u32[3, 2]" in errors and "keys[0]" in errors
    assert "'key' must be a random key" in errors
    assert "data must be an int, got float 1.5" in errors
    assert "seed must be an int, got float 0.5" in errors
    assert "dtype must be an integer dtype, got float32" in errors
    assert "logits must be a floating array, got i32[3]" in errors
    assert "cannot take 5 samples without replacement from 3" in errors
    assert "error[AOT206]" in errors  # keys + 1
    assert "cannot unpack key<fry>[3] into 2 names" in errors
    assert "RngKey" not in errors and "Tensor" not in errors


# ------------------------------------------------------------------ unpacking arrays


def test_arrays_unpack_along_their_first_axis() -> None:
    out, _ = _run("""
        class M(nn.Module):
            def apply(self, x):
                a, b, c = x
                (d,) = x[:1]
                return a * 2.0, c - b, d
        aot.target("t", M, x=aot.f32[3, 4])
    """, X)
    np.testing.assert_array_equal(out[0], X[0] * 2.0)
    np.testing.assert_array_equal(out[1], X[2] - X[1])
    np.testing.assert_array_equal(out[2], X[0])


def test_ellipsis_by_name_indexes_as_the_literal() -> None:
    """Google's exported code writes `x[Ellipsis, None]` for `x[..., None]`, on arrays
    and on numpy arrays alike; `Ellipsis` is the builtin it names."""
    out, _ = _run("""
        import numpy as np
        class M(nn.Module):
            def apply(self, x):
                table = np.arange(12.0).reshape(3, 4)
                assert Ellipsis is ...
                return x[Ellipsis, None], x[Ellipsis, 1:], table[Ellipsis, 0] + x[0, :3]
        aot.target("t", M, x=aot.f32[3, 4])
    """, X)
    np.testing.assert_array_equal(out[0], X[..., None])
    np.testing.assert_array_equal(out[1], X[..., 1:])
    np.testing.assert_array_equal(out[2], np.float32(np.arange(12.0).reshape(3, 4)[..., 0]) + X[0, :3])


def test_unpacking_the_wrong_count_is_located() -> None:
    errors = build_errors("""
        class M(nn.Module):
            def apply(self, x):
                a, b = x
                c, d = x[0, 0]
                return x
        aot.target("t", M, x=aot.f32[3, 4])
    """)
    assert "AOT333" in errors and "cannot unpack f32[3, 4] into 2 names" in errors
    assert "cannot unpack f32[] into 2 names: it is a 0-d array" in errors
    assert "model_" in errors and "^" in errors


# ------------------------------------------------------------------ x.at[...]


def test_at_updates_match_jax() -> None:
    idx = np.array([0, 2], np.int32)
    out, _ = _run("""
        class M(nn.Module):
            def apply(self, x, i):
                y = x.at[1].set(0.0)
                y = y.at[i, 1:].add(1.5)
                y = y.at[:, -1].multiply(x[:, 0])
                return y, x.at[i].get(), x.at[9].get(mode="fill", fill_value=-1.0)
        aot.target("t", M, x=aot.f32[3, 4], i=aot.i32[2])
    """, X, idx)
    x = jnp.asarray(X)
    y = x.at[1].set(0.0).at[idx, 1:].add(1.5)
    y = y.at[:, -1].multiply(x[:, 0])
    np.testing.assert_array_equal(out[0], y)
    np.testing.assert_array_equal(out[1], x[idx])
    np.testing.assert_array_equal(out[2], jnp.full((4,), -1.0))


def test_at_misuse_is_located() -> None:
    errors = build_errors("""
        class M(nn.Module):
            def apply(self, x):
                a = x.at.set(1.0)
                b = x.at[0].append(1.0)
                c = x.at[x > 0].set(0.0)
                d = x.at[0].set(jnp.ones((3,)))
                e = x.at[0].add(1.0, mode="wrap")
                f = x.at[0].get(fill_value="a")
                x[0] = 1.0
                return x
        aot.target("t", M, x=aot.f32[3, 4])
    """)
    assert "x.at needs an index before .set: write x.at[index].set(...)" in errors
    assert "x.at[...] has no supported method 'append'" in errors
    assert "hint: supported: add, divide, get, max, min, mul, multiply, power, set" in errors
    assert "boolean mask indexing has a data-dependent shape" in errors
    assert "values of shape (3,) do not broadcast to the indexed shape (4,)" in errors
    assert "mode must be one of 'promise_in_bounds', 'clip', 'drop', 'fill'" in errors
    assert "fill_value must be a number" in errors
    assert "use x.at[index].set(value)" in errors
    assert "AtIndex" not in errors
    returned = build_errors("""
        class M(nn.Module):
            def apply(self, x):
                return x.at[0]
        aot.target("t", M, x=aot.f32[3, 4])
    """)
    assert "found x.at[...]" in returned and "AtIndex" not in returned


# ------------------------------------------------------------------ padding and slices


@pytest.mark.parametrize("mode,extra", [
    ("constant", ", constant_values=((1.0, 2.0), (3.0, 4.0))"), ("edge", ""),
    ("reflect", ""), ("reflect", ', reflect_type="odd"'), ("symmetric", ""), ("wrap", ""),
    ("maximum", ", stat_length=2"), ("minimum", ""), ("mean", ", stat_length=(1, 3)"),
    ("median", ""), ("linear_ramp", ", end_values=(-1.0, 5.0)"),
])
def test_jnp_pad_modes_match_jax(mode: str, extra: str) -> None:
    source = f"""
        class M(nn.Module):
            def apply(self, x):
                return jnp.pad(x, ((1, 2), (3, 0)), mode="{mode}"{extra})
        aot.target("t", M, x=aot.f32[3, 4])
    """
    m = build(source)
    assert f'mode="{mode}"' in m.__aotflax_text__  # emitted as written
    out, _ = m.TARGETS["t"].apply_fn({}, {}, jnp.asarray(X))
    kwargs = eval(f"dict({extra.lstrip(', ')})")  # noqa: S307 - the test's own text
    np.testing.assert_array_equal(out, jnp.pad(X, ((1, 2), (3, 0)), mode=mode, **kwargs))


def test_padding_and_slicing_misuse_is_located() -> None:
    errors = build_errors("""
        class M(nn.Module):
            def apply(self, x, i):
                a = jnp.pad(x, 1, mode="mirror")
                b = jnp.pad(x, 1, mode="edge", constant_values=0.0)
                c = jnp.pad(x, i)
                d = jnp.pad(x, -1)
                e = jnp.pad(x, 1, constant_values=(1.0, 2.0, 3.0))
                f = jnp.pad(x, 1, mode="reflect", reflect_type="even-odd")
                g = jnp.pad(x, 1, mode="mean", stat_length=0)
                h = jax.lax.pad(x, 0, ((1, 1, 0), (0, 0, 0)))
                k = jax.lax.pad(x, 0.0, ((1, 1, 0),))
                kk = jax.lax.pad(x, 0.0, (((1, 2), 1, 0), (0, 0, 0)))
                m = jax.lax.dynamic_slice(x, (i[0], 0), jnp.array((1, i[1])))
                n = jax.lax.dynamic_slice(x, (i[0],), (1, 2))
                o = jax.lax.dynamic_slice(x, (0, 0), (4, 2))
                oo = jax.lax.dynamic_slice(x, (0, 0), ((1, 2), 2))
                p = jax.lax.dynamic_slice(x, (0.5, 0), (1, 2))
                q = jax.lax.dynamic_update_slice(x, jnp.ones((1, 2), jnp.bfloat16), (0, 0))
                r = jax.lax.dynamic_update_slice(x, jnp.ones((2,)), (0, 0))
                return x
        aot.target("t", M, x=aot.f32[3, 4], i=aot.i32[2])
    """)
    assert "jnp.pad: unknown mode str 'mirror'" in errors and "hint: modes: constant" in errors
    assert "mode 'edge' does not take constant_values" in errors
    assert "pad_width must be static ints, got array i32[2]" in errors
    assert "must be non-negative" in errors
    assert "constant_values of shape (3,) does not fit f32[3, 4]" in errors
    assert "reflect_type must be 'even' or 'odd'" in errors
    assert "stat_length must be positive ints" in errors
    assert "'padding_value' must be a scalar of the operand's dtype f32, got int 0" in errors
    assert errors.count("padding_config must be one static (low, high, interior) triple per "
                        "axis") == 2  # the second with a nested tuple (fuzzing found it)
    assert "slice sizes must be static ints, got array i32[2]" in errors
    assert "hint: sizes fix the output shape: write them as a tuple of ints" in errors
    assert "'start_indices' must give one start index per axis (2)" in errors
    assert "slice sizes (4, 2) must give one size per axis of f32[3, 4]" in errors
    assert "start indices must be ints or integer scalars, got float 0.5" in errors
    assert "must have the operand's dtype f32" in errors
    assert "must have the rank of f32[3, 4]" in errors
    assert errors.count("slice sizes must be static ints, got") == 2
    assert errors.count("error[") == 17  # one per line, none lost or repeated


def test_dynamic_slices_match_jax() -> None:
    idx = np.array([2, 1], np.int32)
    out, _ = _run("""
        class M(nn.Module):
            def apply(self, x, i):
                a = jax.lax.dynamic_slice(x, (i[0], i[1]), (1, 2))
                b = jax.lax.dynamic_update_slice(x, a * 10.0, (0, i[0]))
                c = jax.lax.dynamic_slice_in_dim(x, i[1], 2, axis=1)
                return a, b, c, jax.lax.dynamic_slice(x, i, (2, 2))
        aot.target("t", M, x=aot.f32[3, 4], i=aot.i32[2])
    """, X, idx)
    x = jnp.asarray(X)
    a = jax.lax.dynamic_slice(x, (2, 1), (1, 2))
    want = (a, jax.lax.dynamic_update_slice(x, a * 10.0, (0, 2)),
            jax.lax.dynamic_slice_in_dim(x, 1, 2, axis=1), jax.lax.dynamic_slice(x, idx, (2, 2)))
    for got, w in zip(out, want):
        np.testing.assert_array_equal(got, w)


# ------------------------------------------------------------------ conv, segments, special


def test_conv_functions_match_jax() -> None:
    rng = np.random.default_rng(1)
    img = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    ker = rng.standard_normal((3, 2, 3, 4)).astype(np.float32)
    out, _ = _run("""
        class M(nn.Module):
            def apply(self, img, ker):
                a = jax.lax.conv_general_dilated(img, ker, (2, 1), "SAME", rhs_dilation=(1, 2),
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
                b = jax.lax.conv_transpose(img, ker, (2, 2), "VALID")
                return a, b
        aot.target("t", M, img=aot.f32[2, 6, 5, 3], ker=aot.f32[3, 2, 3, 4])
    """, img, ker)
    dn = ("NHWC", "HWIO", "NHWC")
    want_a = jax.lax.conv_general_dilated(img, ker, (2, 1), "SAME", rhs_dilation=(1, 2),
                                          dimension_numbers=dn)
    want_b = jax.lax.conv_transpose(img, ker, (2, 2), "VALID")
    np.testing.assert_allclose(out[0], want_a, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out[1], want_b, rtol=1e-6, atol=1e-6)


def test_conv_segment_and_special_misuse_is_located() -> None:
    errors = build_errors("""
        class M(nn.Module):
            def apply(self, img, ker, ids):
                a = jax.lax.conv_general_dilated(img, ker, (1, 1), "CIRCULAR")
                b = jax.lax.conv_general_dilated(img, ker, (1, 1), "SAME",
                                                 dimension_numbers=("NHWC", "HWIO"))
                c = jax.lax.conv_general_dilated(img, ker.astype(jnp.bfloat16), (1, 1), "SAME")
                d = jax.lax.conv_general_dilated(img, ker, (1, 1), "SAME",
                                                 dimension_numbers=("NHWC", "HWOI", "NHWC"))
                e = jax.ops.segment_sum(img[0, 0], ids)
                f = jax.ops.segment_sum(img[0, 0], ids.astype(jnp.float32), 4)
                g = jax.scipy.special.ndtr(img.astype(jnp.bfloat16))
                return img
        aot.target("t", M, img=aot.f32[1, 5, 5, 2], ker=aot.f32[3, 3, 2, 4], ids=aot.i32[5])
    """)
    assert "padding must be one of SAME, SAME_LOWER, VALID or (low, high) pairs" in errors
    assert "dimension_numbers must be None, three layout strings such as ('NHWC', 'HWIO', " \
           "'NHWC') or a lax.ConvDimensionNumbers" in errors
    assert "needs input and kernel of one dtype, got f32[1, 5, 5, 2] and bf16[3, 3, 2, 4]" \
        in errors
    assert "conv feature dimensions do not match" in errors
    assert "needs num_segments=: without it the output size depends on the values" in errors
    assert "segment_ids must be integers, got f32[5]" in errors
    assert "jax.scipy.special.ndtr does not accept bf16[1, 5, 5, 2]: it takes float32" in errors


def test_segments_and_special_functions_match_jax() -> None:
    ids = np.array([1, 1, 0], np.int32)
    out, _ = _run("""
        import jax.scipy.special as sp
        from jax.scipy.special import logsumexp

        class M(nn.Module):
            def apply(self, x, ids):
                return (jax.ops.segment_sum(x, ids, num_segments=3),
                        jax.ops.segment_max(x, ids, 2), logsumexp(x, axis=1),
                        sp.xlogy(x * x, jnp.abs(x)), sp.erfinv(jnp.tanh(x)), sp.gammaln(x * x))
        aot.target("t", M, x=aot.f32[3, 4], ids=aot.i32[3])
    """, X, ids)
    sp = jax.scipy.special
    want = (jax.ops.segment_sum(X, ids, num_segments=3), jax.ops.segment_max(X, ids, 2),
            sp.logsumexp(X, axis=1), sp.xlogy(X * X, jnp.abs(X)), sp.erfinv(jnp.tanh(X)),
            sp.gammaln(X * X))
    for got, w in zip(out, want):
        np.testing.assert_allclose(got, w, rtol=1e-6)


def test_logical_functions_are_bool() -> None:
    out, _ = _run("""
        class M(nn.Module):
            def apply(self, x):
                m = jnp.logical_or(x > 0, jnp.logical_not(x < -1))
                return jnp.where(jnp.logical_and(m, jnp.logical_xor(m, x > 1)), x, 0.0)
        aot.target("t", M, x=aot.f32[3, 4])
    """, X)
    m = jnp.logical_or(X > 0, jnp.logical_not(X < -1))
    np.testing.assert_array_equal(out, jnp.where(m & (m ^ (X > 1)), X, 0.0))


def test_jnp_rejects_what_jax_rejects() -> None:
    errors = build_errors("""
        class M(nn.Module):
            def apply(self, x, i):
                a = jnp.bitwise_and(x, 1)
                b = jnp.left_shift(x, i)
                c = jax.lax.add(x, i)
                d = ~x
                e = x.astype(jnp.bool_) - True
                return x
        aot.target("t", M, x=aot.f32[3, 4], i=aot.i32[3, 4])
    """)
    assert "jnp.bitwise_and does not accept f32[3, 4] and the Python scalar 1: it takes bool " \
           "or integer arrays" in errors
    assert "jnp.left_shift does not accept f32[3, 4] and i32[3, 4]" in errors
    assert "jax.lax.add needs operands of one dtype, got f32[3, 4] and i32[3, 4]" in errors
    assert "hint: cast one operand, or use the jnp function, which promotes" in errors
    assert "'~' does not accept f32[3, 4]" in errors
    assert "'-' does not accept bool[3, 4] and the Python scalar True" in errors


# ------------------------------------------------------------------ map and filter


def test_map_and_filter_with_model_functions() -> None:
    out, _ = _run("""
        def double(v):
            return 2 * v

        class M(nn.Module):
            def apply(self, x):
                sizes = list(map(double, (1, 2)))
                wide = list(filter(lambda s: s > 2, sizes + [3]))
                parts = list(map(jnp.tanh, [x, x + 1.0]))
                pairs = tuple(map(lambda a, b: a * b, parts, [x, x]))
                return parts[1], pairs[0], jnp.zeros((len(wide), sizes[1]))
        aot.target("t", M, x=aot.f32[3, 4])
    """, X)
    np.testing.assert_array_equal(out[0], jnp.tanh(X + 1.0))
    np.testing.assert_array_equal(out[1], jnp.tanh(X) * X)
    assert out[2].shape == (2, 4)


def test_filter_on_arrays_is_located() -> None:
    errors = build_errors("""
        class M(nn.Module):
            def apply(self, x):
                kept = list(filter(lambda v: v > 0, [x]))
                bad = map(jnp.tanh)
                return x
        aot.target("t", M, x=aot.f32[3, 4])
    """)
    assert "filter's condition must be static, got array bool[3, 4]" in errors
    assert "map() takes map(function, iterable, ...)" in errors


# ------------------------------------------------------------------ nn.initializers


def test_initializers_cover_jax_and_linen() -> None:
    """Every initializer of jax.nn.initializers and of Linen has a factory of that name,
    with jax's parameter names and defaults."""
    ours = set(inits.FACTORIES) | set(inits.PLAIN)
    theirs = {n for n in dir(jax.nn.initializers) if not n.startswith("_") and n != "Initializer"}
    theirs |= {n for n in dir(linen.initializers) if not n.startswith("_") and n != "Initializer"}
    assert theirs <= ours, f"missing: {sorted(theirs - ours)}"
    for name, sig in inits.FACTORIES.items():
        fn = getattr(jax.nn.initializers, name, None) or getattr(linen.initializers, name)
        params = [p for p in inspect.signature(fn).parameters.values()]
        written = [p.split("=")[0].strip() for p in sig.split(",") if p.strip()]
        assert written == [p.name for p in params], name
        for p, text in zip(params, [s.strip() for s in sig.split(",") if s.strip()]):
            if p.default is not inspect.Parameter.empty and p.default is not None:
                assert "=" in text and eval(text.split("=")[1]) == p.default, (name, p.name)


INITIALIZERS = [
    ("zeros", None), ("ones", None), ("zeros_init()", "zeros_init()"),
    ("ones_init()", "ones_init()"), ("constant(0.5)", None), ("normal(stddev=0.2)", None),
    ("truncated_normal(0.3, lower=-1.0)", None), ("uniform(scale=2.0)", None),
    ('variance_scaling(2.0, "fan_avg", "uniform")', None),
    ("glorot_normal()", None), ("glorot_uniform()", None), ("xavier_normal()", None),
    ("xavier_uniform()", None), ("he_normal()", None), ("he_uniform()", None),
    ("kaiming_normal()", None), ("kaiming_uniform()", None), ("lecun_normal()", None),
    ("lecun_uniform(in_axis=0, out_axis=1)", None), ("orthogonal(scale=1.5)", None),
    ("delta_orthogonal()", None),
]


@pytest.mark.parametrize("init,linen_only", INITIALIZERS, ids=[i for i, _ in INITIALIZERS])
def test_initializer_values_match_jax(init: str, linen_only: str | None) -> None:
    """The parameter's initial value is the initializer applied to the parameter's key:
    fold_in(rng, crc32(name)), the rule of scopes.py."""
    shape = (3, 4, 4) if init.startswith("delta") else (16, 8)
    m = build(f"""
        class M(nn.Module):
            def apply(self, x):
                return self.param("w", {shape}, nn.initializers.{init})
        aot.target("t", M, x=aot.f32[2])
    """)
    rng = jax.random.key(3)
    params, _ = m.TARGETS["t"].init_fn(rng)
    key = jax.random.fold_in(rng, zlib.crc32(b"w") & 0x7FFFFFFF)
    namespace = linen.initializers if linen_only else jax.nn.initializers
    fn = eval(f"ns.{init}", {"ns": namespace})  # noqa: S307 - the test's own text
    np.testing.assert_array_equal(params["w"], fn(key, shape, jnp.float32))


def test_keys_travel_through_a_scan_carry() -> None:
    """seq2seq's decoder splits a key carried by its scan step."""
    out, _ = _run("""
        class M(nn.Module):
            def apply(self, x):
                def step(carry, row):
                    rng, total = carry
                    rng, sub = jax.random.split(rng)
                    total = total + row * jax.random.uniform(sub, row.shape)
                    return (rng, total), total
                (_, total), ys = jax.lax.scan(step, (jax.random.PRNGKey(0), jnp.zeros((4,))), x)
                return total, ys
        aot.target("t", M, x=aot.f32[3, 4])
    """, X)

    def step(carry, row):
        rng, total = carry
        rng, sub = jax.random.split(rng)
        total = total + row * jax.random.uniform(sub, row.shape)
        return (rng, total), total

    (_, total), ys = jax.lax.scan(step, (jax.random.PRNGKey(0), jnp.zeros((4,))), X)
    np.testing.assert_allclose(out[0], total, rtol=1e-6)
    np.testing.assert_allclose(out[1], ys, rtol=1e-6)


def test_lax_concatenate_is_strict_like_lax() -> None:
    """A third-party flax.nn ViT joins its class token with `lax.concatenate`: one dtype,
    no promotion, and a dimension in range (lax does not count from the end)."""
    errors = build_errors("""
    from jax import lax

    class Net(nn.Module):
        def apply(self, x):
            a = lax.concatenate([x, x.astype(jnp.int32)], 1)
            b = lax.concatenate([x, x], -1)
            return x

    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    assert "needs operands of one dtype, got float32, int32" in errors
    assert "use jnp.concatenate, which promotes" in errors
    assert "dimension -1 is out of range for f32[2, 3]" in errors


def test_list_indices_are_checked_like_jax() -> None:
    """A static list inside an index tuple is an array index (a jVMC-era model's
    `x[:, :, [0, 2]]`); jax refuses a list as the whole index, and its numbers must lie
    in the axis they index."""
    errors = build_errors("""
    class Net(nn.Module):
        def apply(self, x):
            a = x[[0, 1]]
            b = x[:, [0, 4]]
            c = x[:, [True, False]]
            d = x[:, [0, 1.5]]
            return x

    aot.target("net", Net, x=aot.f32[2, 4])
    """)
    assert "a list as the whole index is refused by jax" in errors
    assert "index 4 is out of bounds for axis 1 of size 4" in errors
    assert "a boolean index of 2 items for an axis of 4" in errors
    assert "an index list must hold static ints" in errors


def test_max_with_where_needs_initial_as_jax_says() -> None:
    errors = build_errors("""
        class Net(nn.Module):
            def apply(self, x):
                return x.max(where=x > 0)

        aot.target("net", Net, x=aot.f32[2, 3])
        """)
    assert "error[AOT203]: x.max with where= needs initial=" in errors, errors


@pytest.mark.parametrize("expr", ["jnp.argmax(jnp.zeros((2, 0)), axis=-1)",
                                  "jnp.max(jnp.zeros((2, 0)), axis=1)",
                                  "jnp.median(jnp.zeros((2, 0)), axis=1)"])
def test_reductions_without_identity_over_empty_axes_are_located(expr: str) -> None:
    """jax refuses them when it traces (fuzzing made a hash's bucket count 0): a located
    error at the call, not a failure of the emitted code."""
    errors = build_errors(f"""
        class Net(nn.Module):
            def apply(self, x):
                return x.sum() + {expr}

        aot.target("net", Net, x=aot.f32[2, 3])
        """)
    assert "error[AOT210]" in errors and "over an empty axis of f32[2, 0] has no value" in errors


def test_reductions_over_empty_axes_with_an_empty_result_or_an_initial_build() -> None:
    m = build("""
        class Net(nn.Module):
            def apply(self, x):
                e = jnp.zeros((2, 0))
                return jnp.max(e, axis=0), jnp.argmax(jnp.zeros((0, 3)), axis=1), \\
                    jnp.max(e, axis=1, initial=-1.0)

        aot.target("net", Net, x=aot.f32[2, 3])
        """)
    (a, b, c), _ = m.net.apply({}, {}, np.zeros((2, 3), np.float32))
    assert a.shape == (0,) and b.shape == (0,) and c.tolist() == [-1.0, -1.0]
