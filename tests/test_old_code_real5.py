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
    ("operator.add(x)", "AOT304]: operator.add takes 2 positional arguments, got 1"),
    ("operator.neg(a=x)", "AOT304]: operator.neg takes 1 positional argument, got 0"),
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


def test_a_module_base_without_apply_is_a_base() -> None:
    """`class BaseModel(nn.Module)` of classmethods and helpers, subclassed by the model
    that defines `apply` (as research code structured its model zoo)."""
    m = build("""
    class BaseModel(nn.Module):
        @classmethod
        def build(cls, hparams):
            return cls.partial(features=hparams["features"])

        @staticmethod
        def act(x):
            return nn.relu(x)


    class Mlp(BaseModel):
        def apply(self, x, features):
            return Mlp.act(nn.Dense(x, features, name="fc"))

    aot.target("t", Mlp.partial(features=3), x=aot.f32[2, 4])
    """)
    params = m.t.init(jax.random.key(0))[0]
    x = _x(2, 4)
    y, _ = m.t.apply(params, {}, x)
    fc = {k: np.asarray(v) for k, v in params["fc"].items()}
    want = np.maximum(x @ fc["kernel"] + fc["bias"], 0)
    np.testing.assert_allclose(y, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("use, where", [
    ("NoApply(x)", ":6:7: error[AOT321]: module NoApply has no apply method"),
    (None, ":6:7: error[AOT321]: module NoApply has no apply method"),
])
def test_calling_a_module_without_apply_is_located_at_its_class(use: str | None,
                                                                where: str) -> None:
    target = ('aot.target("t", Net, x=aot.f32[2, 4])' if use else
              'aot.target("t", NoApply, x=aot.f32[2, 4])')
    out = build_errors(f"""
    class NoApply(nn.Module):
        def encode(self, x):
            return x


    class Net(nn.Module):
        def apply(self, x):
            return {use or "x"}

    {target}
    """)
    assert where in out, out
    assert ("note: called here" if use else "note: a target uses it here") in out, out


_JVP = """
import functools


@jax.custom_jvp
def flip(x):
    return x


@flip.defjvp
def flip_jvp(primals, tangents):
    def identity(x):
        return x

    out, tangent = jax.jvp(identity, primals, tangents)
    return out, -1 * tangent


class M(nn.Module):
    def apply(self, x, v):
        y, dy = jax.jvp(lambda a, b: jnp.sin(a) * b, (x, v), (v, x))
        h = nn.Dense(flip(x), 3, name="fc")
        return y, dy, h
"""


def test_jax_jvp_in_modules_and_custom_rules() -> None:
    """A gradient-reversal layer (DANN) writes its custom_jvp rule with `jax.jvp`."""
    m = build(_JVP + 'aot.target("t", M, x=aot.f32[2, 4], v=aot.f32[2, 4])\n')
    params = m.t.init(jax.random.key(0))[0]
    x, v = _x(2, 4), _x(2, 4, seed=1)
    (y, dy, h), _ = m.t.apply(params, {}, x, v)
    want_y, want_dy = jax.jvp(lambda a, b: jnp.sin(a) * b, (x, v), (v, x))
    np.testing.assert_allclose(y, want_y, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dy, want_dy, rtol=RTOL, atol=ATOL)
    fc = {k: np.asarray(v) for k, v in params["fc"].items()}
    np.testing.assert_allclose(h, x @ fc["kernel"] + fc["bias"], rtol=RTOL, atol=ATOL)

    def loss(x: jax.Array) -> jax.Array:
        return jnp.sum(m.t.apply(params, {}, x, v)[0][2])

    np.testing.assert_allclose(jax.grad(loss)(jnp.asarray(x)),
                               -np.broadcast_to(fc["kernel"].sum(1), (2, 4)), rtol=RTOL,
                               atol=ATOL)


@pytest.mark.parametrize("call, message", [
    ("jax.jvp(jnp.sin, x, x)", "AOT365]: jax.jvp: primals must be a tuple or list of arrays"),
    ("jax.jvp(jnp.sin, (x,), (x[0],))", "AOT365]: jax.jvp: a tangent must have its primal's "
     "shape and dtype: f32[4] for f32[2, 4]"),
    ("jax.jvp(jnp.sin, (x,), (x, x))", "AOT365]: jax.jvp: 1 primals and 2 tangents"),
    ("jax.jvp(lambda a: nn.Dense(a, 2), (x,), (x,))", "AOT365]: a function given to jax.jvp "
     "may not use layers"),
])
def test_jvp_misuse_is_located(call: str, message: str) -> None:
    out = build_errors(f"""
    class M(nn.Module):
        def apply(self, x):
            return {call}

    aot.target("t", M, x=aot.f32[2, 4])
    """)
    assert message in out and ":8:16:" in out, out


def test_jnp_scalar_types_outside_modules_are_concrete_scalars() -> None:
    """`fill_value=jnp.float32(0.5)` bound where a model is built: a float32 scalar, as
    numpy's (strongly typed, so a bfloat16 array times it is float32, as in jax)."""
    m = build("""
    import functools


    def constant(key, shape, fill_value):
        return jnp.full(shape, fill_value)


    class M(nn.Module):
        def apply(self, x, scale, bias_init):
            return nn.Dense(x, 3, bias_init=bias_init, name="fc") * scale, x * scale

    HALF = jnp.float32(0.5)
    aot.target("t", M.partial(scale=jnp.float32(2.0),
                              bias_init=functools.partial(constant, fill_value=HALF)),
               x=aot.bf16[2, 4])
    """)
    params = m.t.init(jax.random.key(0))[0]
    np.testing.assert_array_equal(params["fc"]["bias"], np.full((3,), 0.5, np.float32))
    assert params["fc"]["bias"].dtype == np.float32
    x = jnp.asarray(_x(2, 4), jnp.bfloat16)
    (h, scaled), _ = m.t.apply(params, {}, x)
    assert scaled.dtype == (x * jnp.float32(2.0)).dtype == jnp.float32
    np.testing.assert_array_equal(scaled, x * jnp.float32(2.0))


def test_a_partial_of_a_model_function_is_an_initializer() -> None:
    m = build("""
    import functools


    def scaled_normal(key, shape, dtype, scale):
        return scale * jax.random.normal(key, shape, dtype)


    def filled(key, shape, fill_value):
        return jnp.full(shape, fill_value)


    class M(nn.Module):
        def apply(self, x):
            k = self.param("k", (4, 3), functools.partial(scaled_normal, scale=0.0))
            b = self.param("b", (3,), functools.partial(functools.partial(filled),
                                                        fill_value=1.5))
            return x @ k + b[None]

    aot.target("t", M, x=aot.f32[2, 4])
    """)
    params = m.t.init(jax.random.key(0))[0]
    np.testing.assert_array_equal(params["k"], np.zeros((4, 3), np.float32))
    np.testing.assert_array_equal(params["b"], np.full((3,), 1.5, np.float32))


@pytest.mark.parametrize("init, message", [
    ("functools.partial(filled, fill_value=x[0, 0])", "AOT314]: initializer "
     "functools.partial(filled, ...) binds arrays"),
    ("functools.partial(filled, 1, 2)", "AOT314]: initializer filled must take (key, shape, "
     "dtype), it takes (fill_value) besides the arguments its partial binds"),
])
def test_partial_initializer_misuse_is_located(init: str, message: str) -> None:
    out = build_errors(f"""
    import functools


    def filled(key, shape, fill_value):
        return jnp.full(shape, fill_value)


    class M(nn.Module):
        def apply(self, x):
            return x + self.param("b", (3,), {init})[None]

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    assert message in out, out


def test_an_initializer_closure_over_sizes_is_not_initialized_from_data() -> None:
    """`n_heads = v.shape[2]` read in apply and used by the parameter's initializer (a
    lambda calling a model function): the sizes are numbers there, so the parameter
    is initialized by `init(rng)`, without a forward pass."""
    m = build("""
    def bias_init(length, heads):
        w = jnp.arange(length)[None, :] * 0.5 + jnp.ones((heads, 1))
        return w[None]


    class M(nn.Module):
        def apply(self, v):
            _, length, heads, _ = v.shape
            w = self.param("w", (1, heads, length),
                           lambda key, shape: bias_init(length, heads))
            return v * jnp.transpose(w, (0, 2, 1))[..., None]

    aot.target("t", M, v=aot.f32[2, 5, 3, 4])
    """)
    assert not m.t.init_inputs
    params = m.t.init(jax.random.key(0))[0]
    want_w = (np.arange(5)[None, :] * 0.5 + np.ones((3, 1)))[None].astype(np.float32)
    np.testing.assert_array_equal(params["w"], want_w)
    v = _x(2, 5, 3, 4)
    y, _ = m.t.apply(params, {}, v)
    np.testing.assert_allclose(y, v * want_w.transpose(0, 2, 1)[..., None], rtol=RTOL)


def test_reshape_takes_newshape_its_old_keyword() -> None:
    m = build("""
    class M(nn.Module):
        def apply(self, x):
            b, n = x.shape
            return jnp.reshape(x, newshape=[b, 2, n // 2]), jnp.reshape(x, (n, b))

    aot.target("t", M, x=aot.f32[3, 4])
    """)
    assert "newshape" not in m.__aotflax_text__
    x = _x(3, 4)
    (a, b), _ = m.t.apply({}, {}, x)
    np.testing.assert_array_equal(a, x.reshape(3, 2, 2))
    np.testing.assert_array_equal(b, x.reshape(4, 3))
    out = build_errors("""
    class M(nn.Module):
        def apply(self, x):
            return jnp.reshape(x, (4, 3), newshape=(12,))

    aot.target("t", M, x=aot.f32[3, 4])
    """)
    assert "AOT203]: jnp.reshape: give shape or newshape (its old name), not both" in out


def test_fft_relative_position_bias() -> None:
    """A Toeplitz product by FFT (kernelized attention's relative position bias):
    pad, rfft, multiply, irfft back to n samples, against jnp.fft itself."""
    m = build("""
    class Bias(nn.Module):
        def apply(self, v):
            batch, length, heads, dim = v.shape
            w = self.param("w", (heads, 2 * length - 1), nn.initializers.normal(0.1))
            z_fft = jnp.fft.rfft(w)
            vt = jnp.pad(jnp.transpose(v, (0, 3, 2, 1)),
                         ((0, 0), (0, 0), (0, 0), (length - 1, 0)))
            out = jnp.fft.irfft(jnp.fft.rfft(vt) * z_fft[None, None], n=2 * length - 1)
            spectrum = jnp.fft.fftshift(jnp.abs(jnp.fft.fft2(v, axes=(1, 3))), axes=1)
            return jnp.transpose(out[..., :length], (0, 3, 2, 1)), spectrum

    aot.target("t", Bias, v=aot.f32[2, 6, 2, 4])
    """)
    params = m.t.init(jax.random.key(0))[0]
    v = _x(2, 6, 2, 4)
    (y, spectrum), _ = m.t.apply(params, {}, v)
    w = params["w"]
    vt = jnp.pad(jnp.transpose(v, (0, 3, 2, 1)), ((0, 0), (0, 0), (0, 0), (5, 0)))
    want = jnp.fft.irfft(jnp.fft.rfft(vt) * jnp.fft.rfft(w)[None, None], n=11)
    np.testing.assert_allclose(y, jnp.transpose(want[..., :6], (0, 3, 2, 1)), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(
        spectrum, jnp.fft.fftshift(jnp.abs(jnp.fft.fft2(v, axes=(1, 3))), axes=1),
        rtol=1e-5, atol=1e-5)
    assert y.dtype == jnp.float32 and spectrum.dtype == jnp.float32


@pytest.mark.parametrize("call, message", [
    ("jnp.fft.rfft(jnp.fft.fft(x))", "AOT201]: jnp.fft.rfft transforms real values, got "
     "c64[2, 4]"),
    ("jnp.fft.fft(x, n=0)", "AOT203]: jnp.fft.fft: n must be a positive int, got 0"),
    ('jnp.fft.fft(x, norm="half")', "AOT203]: jnp.fft.fft: norm must be None, 'backward', "
     "'ortho' or 'forward', got 'half'"),
    ("jnp.fft.fft2(x, s=(2,))", "AOT203]: jnp.fft.fft2: s has 1 lengths for 2 axes"),
    ("jnp.fft.fftn(x, axes=(0, 0))", "AOT203]: jnp.fft.fftn: axes (0, 0) repeat an axis"),
    ("jnp.fft.irfft(x[:, :1])", "AOT210]: jnp.fft.irfft: the output length 0 must be "
     "positive"),
    ("jnp.fft.fft(x, axis=2)", "AOT210]: jnp.fft.fft:"),
])
def test_fft_misuse_is_located(call: str, message: str) -> None:
    out = build_errors(f"""
    class M(nn.Module):
        def apply(self, x):
            return {call}

    aot.target("t", M, x=aot.f32[2, 4])
    """)
    assert message in out and ":8:16:" in out, out


def test_a_registry_decorator_on_a_module_class() -> None:
    """`@register_model(name="ddpm")` of the model file records the class in a dict and
    returns it (score-network zoos); the class stays the module.  (A target reading the
    registry sees the classes its code reached: a class statement runs when its name is
    used, not at import.)"""
    m = build("""
    _MODELS = {}


    def register_model(cls=None, *, name=None):
        def _register(cls):
            local_name = cls.__name__ if name is None else name
            if local_name in _MODELS:
                raise ValueError(f"Already registered model with name: {local_name}")
            _MODELS[local_name] = cls
            return cls
        if cls is None:
            return _register
        return _register(cls)


    @register_model
    class Inner(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 2, name="fc")


    @register_model(name="outer")
    class Outer(nn.Module):
        def apply(self, x):
            return Inner(x, name="inner") * 2

    aot.target("t", Outer, x=aot.f32[2, 3])
    """)
    params = m.t.init(jax.random.key(0))[0]
    x = _x(2, 3)
    fc = {k: np.asarray(v) for k, v in params["inner"]["fc"].items()}
    np.testing.assert_allclose(m.t.apply(params, {}, x)[0], (x @ fc["kernel"] + fc["bias"]) * 2,
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("decorator, message", [
    ("wrap", "AOT102]: the decorator wrap returns int 1, not the class M"),
    ("jax.jit", "AOT102]: class decorators are not supported on modules, other than "
     "functions of the model files"),
    ("print", "AOT102]: class decorators are not supported on modules"),
    ("wrap(2)", "AOT102]: the class decorator gives int 1, not a function to apply"),
])
def test_module_decorators_that_replace_the_class_are_refused(decorator: str,
                                                              message: str) -> None:
    out = build_errors(f"""
    def wrap(cls):
        return 1


    @{decorator}
    class M(nn.Module):
        def apply(self, x):
            return x

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    assert message in out, out


def test_string_constants_build_einsum_subscripts() -> None:
    m = build("""
    import string


    def contract_inner(x, y):
        x_chars = list(string.ascii_lowercase[:len(x.shape)])
        y_chars = list(string.ascii_uppercase[:len(y.shape)])
        y_chars[0] = x_chars[-1]
        out = "".join(x_chars[:-1] + y_chars[1:])
        return jnp.einsum("{},{}->{}".format("".join(x_chars), "".join(y_chars), out), x, y)


    class M(nn.Module):
        def apply(self, x, w):
            return contract_inner(x, w)

    aot.target("t", M, x=aot.f32[2, 3, 4], w=aot.f32[4, 5])
    """)
    assert 'jnp.einsum("abc,cB->abB", x, w)' in m.__aotflax_text__
    x, w = _x(2, 3, 4), _x(4, 5, seed=1)
    np.testing.assert_allclose(m.t.apply({}, {}, x, w)[0], np.tensordot(x, w, 1), rtol=1e-5,
                               atol=1e-5)


def test_noise_levels_and_upsampling_of_score_networks() -> None:
    """`jnp.exp(jnp.linspace(jnp.log(begin), jnp.log(end), n))` (bounds that are arrays)
    and `jax.image.resize` (nearest and bilinear), against jax."""
    m = build("""
    import math


    class M(nn.Module):
        def apply(self, x, labels, begin=50.0, end=0.01, n=10):
            sigmas = jnp.exp(jnp.linspace(jnp.log(begin), jnp.log(end), n))
            b, h, w, c = x.shape
            up = jax.image.resize(x, (b, 2 * h, 2 * w, c), "nearest")
            smooth = jax.image.resize(x, (b, h + 3, w, c), "bilinear")
            return x / sigmas[labels][:, None, None, None], up, smooth

    aot.target("t", M, x=aot.f32[2, 3, 4, 2], labels=aot.i32[2])
    """)
    x, labels = _x(2, 3, 4, 2), np.array([0, 9], np.int32)
    (scaled, up, smooth), _ = m.t.apply({}, {}, x, labels)
    sigmas = jnp.exp(jnp.linspace(jnp.log(50.0), jnp.log(0.01), 10))
    np.testing.assert_allclose(scaled, x / np.asarray(sigmas)[labels][:, None, None, None],
                               rtol=RTOL)
    np.testing.assert_array_equal(up, jax.image.resize(x, (2, 6, 8, 2), "nearest"))
    np.testing.assert_allclose(smooth, jax.image.resize(x, (2, 6, 4, 2), "bilinear"),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("call, message", [
    ('jax.image.resize(x, (2, 8), "area")', "AOT203]: jax.image.resize: unknown method "
     "'area'"),
    ('jax.image.resize(x, (2, 4, 1), "nearest")', "AOT203]: jax.image.resize: shape must be 2 "
     "sizes for f32[2, 4]"),
    ("jnp.linspace(x > 0, 1.0, 3)", "AOT201]: jnp.linspace: start must be real numbers, got "
     "bool[2, 4]"),
    ("jnp.linspace(x, x.T, 3)", "AOT210]: jnp.linspace:"),
])
def test_resize_and_linspace_misuse_is_located(call: str, message: str) -> None:
    out = build_errors(f"""
    class M(nn.Module):
        def apply(self, x):
            return {call}

    aot.target("t", M, x=aot.f32[2, 4])
    """)
    assert message in out and ":8:16:" in out, out


def test_config_dict_from_its_defining_module() -> None:
    """`from ml_collections.config_dict import config_dict` (init2winit's hparams)."""
    m = build("""
    from ml_collections.config_dict import config_dict
    from ml_collections import config_dict as package

    HPARAMS = config_dict.ConfigDict(dict(features=3, model_dtype="float32"))
    MORE = package.ConfigDict({"scale": 2.0})


    class M(nn.Module):
        def apply(self, x, hps=HPARAMS, more=MORE):
            return nn.Dense(x, hps.features, dtype=hps.model_dtype, name="fc") * more.scale

    aot.target("t", M, x=aot.f32[2, 4])
    """)
    params = m.t.init(jax.random.key(0))[0]
    fc = {k: np.asarray(v) for k, v in params["fc"].items()}
    x = _x(2, 4)
    np.testing.assert_allclose(m.t.apply(params, {}, x)[0], (x @ fc["kernel"] + fc["bias"]) * 2,
                               rtol=RTOL, atol=ATOL)


def test_a_vmapped_objective_in_a_loss() -> None:
    """A loss calling a top-level `@jax.jit @jax.vmap` objective (a generative design
    script's), one train step of sgd against the same loss in jax."""
    m = build("""
    import optax


    @jax.jit
    @jax.vmap
    def objective(x_design):
        return jnp.minimum(jnp.sum(jnp.abs(x_design - jnp.array([4.0, 0.0]))),
                           jnp.sum(jnp.abs(x_design - jnp.array([0.0, 4.0]))))


    def design_loss(out):
        return jnp.mean(objective(out))


    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 2, name="fc")

    aot.train_target("t", Net, x=aot.f32[6, 3], loss=design_loss, optimizer=optax.sgd(0.1))
    """)
    params = m.t.init(jax.random.key(0))[0]
    x = _x(6, 3)

    def objective(d: jax.Array) -> jax.Array:
        return jnp.minimum(jnp.sum(jnp.abs(d - jnp.array([4.0, 0.0]))),
                           jnp.sum(jnp.abs(d - jnp.array([0.0, 4.0]))))

    def loss(p: dict) -> jax.Array:
        return jnp.mean(jax.vmap(objective)(x @ p["fc"]["kernel"] + p["fc"]["bias"][None]))

    grads = jax.grad(loss)(params)
    want = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
    copy = jax.tree_util.tree_map(jnp.array, params)
    new, _, _, _ = m.t.train_step(copy, {}, m.t.init_opt(copy), x)
    for name in ("kernel", "bias"):
        np.testing.assert_allclose(new["fc"][name], want["fc"][name], rtol=1e-5, atol=1e-6)


def test_a_loss_failing_inside_reports_the_cause_once() -> None:
    out = build_errors("""
    import optax


    def bad_loss(out):
        return jnp.mean(nn.make_rng())


    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 2)

    aot.train_target("t", Net, x=aot.f32[6, 3], loss=bad_loss, optimizer=optax.sgd(0.1))
    """)
    assert out.count("error[") == 1, out
    assert "AOT425" not in out, out
