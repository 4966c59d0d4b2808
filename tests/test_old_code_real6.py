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
import jax.numpy as jnp
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
    ("K = jax.random.PRNGKey(1.5)", ":6:5: error[AOT203]: jax.random.PRNGKey: seed must be an "
     "int, got float 1.5"),
    ("K = jax.random.split(jax.random.PRNGKey(0), 3)[5]", ":6:5: error[AOT210]: indexing: "
     "index 5 is out of bounds for an axis of size 3 in (3, 2)"),
    ("K = jax.random.normal(jax.random.PRNGKey(0), (2,))", ":11:16: error[AOT210]: '+': "
     "cannot broadcast shapes (2, 3) and (2,)"),
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


# ------------------------------------------------------------- 3. classmethods, custom_vjp


def test_module_classmethods_make_configured_modules() -> None:
    """`@classmethod def make(cls, ...)` returning `cls.partial(...)`, called as `M.make(...)`
    from another module, from `self`, on a subclass, and for a target."""
    import flax.linen as linen

    m = build("""
    class Block(nn.Module):
        WIDTH = 2

        @classmethod
        def make(cls, scale):
            return cls.partial(features=cls.WIDTH * scale)

        @classmethod
        def run(cls, x, scale):
            return cls.make(scale)(x, name=f"run{scale}")

        def apply(self, x, features):
            return nn.Dense(x, features, name="fc")


    class Wide(Block):
        WIDTH = 3


    class M(nn.Module):
        def apply(self, x):
            y = Block.make(2)(x, name="a")
            y = Wide.make(1)(y, name="b")
            return Block.run(y, 1)

    aot.target("t", M, x=aot.f32[2, 5])
    aot.target("u", Wide.make(2), x=aot.f32[2, 5])
    """)
    params = m.t.init(jax.random.key(0))[0]
    assert params["a"]["fc"]["kernel"].shape == (5, 4)
    assert params["b"]["fc"]["kernel"].shape == (4, 3)
    assert params["run1"]["fc"]["kernel"].shape == (3, 2)
    assert m.u.init(jax.random.key(0))[0]["fc"]["kernel"].shape == (5, 6)
    x = _x(2, 5)
    got, _ = m.t.apply(params, {}, x)

    class Ref(linen.Module):
        @linen.compact
        def __call__(self, x):
            for name, features in (("a", 4), ("b", 3), ("run1", 2)):
                x = linen.Dense(features, name=name)(x)
            return x

    linen_params = {k: v["fc"] for k, v in params.items()}
    want = Ref().apply({"params": linen_params}, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_classmethod_through_self_gets_the_module_class() -> None:
    m = build("""
    class M(nn.Module):
        SCALE = 3.0

        @classmethod
        def factor(cls):
            return cls.SCALE * 2

        def apply(self, x):
            return x * self.factor()

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    x = _x(2, 3)
    np.testing.assert_allclose(m.t.apply({}, {}, x)[0], x * 6.0, rtol=RTOL)


def test_custom_vjp_with_static_nondiff_arguments() -> None:
    """`@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))`, the gradient clipping
    of 2020 code: the bound is static, the backward rule takes it first.  Each bound gets
    its own emitted functions; the gradient is jax's custom_vjp's."""
    m = build("""
    import functools


    @functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
    def clip_gradient(x, lo, hi):
        return x * 1.0


    def clip_gradient_fwd(x, lo, hi):
        return clip_gradient(x, lo, hi), None


    def clip_gradient_bwd(lo, hi, _, g):
        return (jnp.clip(g, lo, hi),)


    clip_gradient.defvjp(clip_gradient_fwd, clip_gradient_bwd)


    class M(nn.Module):
        def apply(self, x):
            return clip_gradient(x, -0.5, 0.5) + clip_gradient(x, -0.1, 0.2)

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    x = _x(2, 3)
    c = _x(2, 3, seed=1) * 2
    np.testing.assert_allclose(m.t.apply({}, {}, x)[0], 2 * x, rtol=RTOL)
    grad = jax.grad(lambda v: (m.t.apply({}, {}, v)[0] * c).sum())(x)
    want = np.clip(c, -0.5, 0.5) + np.clip(c, -0.1, 0.2)
    np.testing.assert_allclose(grad, want, rtol=RTOL, atol=ATOL)
    assert m.__aotflax_text__.count("@jax.custom_vjp") == 2  # one per set of bounds


@pytest.mark.parametrize("call, decorator, message", [
    ("clip_gradient(x, x)", "nondiff_argnums=(1,)", ":27:16: error[AOT366]: argument 1 of "
     "custom_vjp function clip_gradient is in nondiff_argnums and must be static here"),
    ("clip_gradient(x, 1.0)", "nondiff_argnums=(2,)", ":9:2: error[AOT366]: jax.custom_vjp: "
     "nondiff_argnums must be distinct positions of clip_gradient's 2 positional parameters"),
    ("clip_gradient(x, x)", "nondiff_argnums=()", ":18:1: error[AOT366]: a custom_vjp "
     "backward rule takes (residuals, cotangent)"),
])
def test_custom_vjp_nondiff_misuse_is_located(call: str, decorator: str, message: str) -> None:
    out = build_errors(f"""
    import functools


    @functools.partial(jax.custom_vjp, {decorator})
    def clip_gradient(x, bound):
        return x


    def fwd(x, bound):
        return x, None


    def bwd(bound, _, g):
        return (jnp.clip(g, -bound, bound),)


    clip_gradient.defvjp(fwd, bwd)


    class M(nn.Module):
        def apply(self, x):
            return {call}

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    assert message in out, out


# ------------------------------------------------------------- 4. enums


_ENUMS = """
import enum


class Activation(enum.Enum):
    RELU = "relu"
    TANH = "tanh"
    IDENTITY = "identity"


class Width(enum.IntEnum):
    SMALL = 2
    LARGE = 5


class Stage(enum.Enum):
    FIRST = enum.auto()
    SECOND = enum.auto()


ACTIVATIONS = {Activation.RELU: nn.relu, Activation.TANH: jnp.tanh}
""".replace("\n", "\n    ")


def test_enum_members_are_static_hyperparameters() -> None:
    """Members passed as hyperparameters, compared (`==`, `is`, `in`), looked up by value
    and by name, looped over; `.name`, `.value`; an IntEnum as an int.  The Dense layers
    are Linen's at the same parameters."""
    import flax.linen as linen

    m = build(_ENUMS + """

    class Block(nn.Module):
        def apply(self, x, act=Activation.RELU, width=Width.SMALL):
            y = nn.Dense(x, width.value if act is Activation.TANH else int(width), name="fc")
            if act == Activation.IDENTITY:
                return y
            return ACTIVATIONS[act](y)


    def width_of(w):
        return jnp.asarray(w.value)


    class M(nn.Module):
        def apply(self, x, act_name="tanh"):
            act = Activation(act_name)
            y = Block(x, act=act, width=Width.LARGE, name="a")
            z = Block(y, act=Activation["RELU"], name="b")
            w = Block(z, act=Activation.IDENTITY, width=Width(2), name="c")
            names = [a.name for a in Activation if a != Activation.IDENTITY]
            stages = [s.value for s in Stage]
            assert Width.LARGE == 5 and Width.SMALL < 3 and act in (Activation.TANH,)
            assert names == ["RELU", "TANH"] and stages == [1, 2] and len(Activation) == 3
            assert Width.SMALL * 2 + 1 == 5 and act != Activation.RELU
            return w, width_of(Width.LARGE)

    aot.target("t", M, x=aot.f32[2, 3])
    """, header=True)
    params = m.t.init(jax.random.key(0))[0]
    assert params["a"]["fc"]["kernel"].shape == (3, 5)
    x = _x(2, 3)
    (w, width), _ = m.t.apply(params, {}, x)
    assert int(width) == 5

    class Ref(linen.Module):
        @linen.compact
        def __call__(self, x):
            y = jnp.tanh(linen.Dense(5, name="a")(x))
            z = linen.relu(linen.Dense(2, name="b")(y))
            return linen.Dense(2, name="c")(z)

    want = Ref().apply({"params": {k: v["fc"] for k, v in params.items()}}, x)
    np.testing.assert_allclose(w, want, rtol=1e-5, atol=1e-5)
    assert "Activation.TANH" in m.__aotflax_text__  # the docstrings name the member


@pytest.mark.parametrize("use, message", [
    ("Activation.GELU", ":30:16: error[AOT346]: enum Activation has no member GELU"),
    ('Activation("gelu")', ":30:16: error[AOT345]: 'gelu' is not a valid Activation"),
    ("Activation.RELU.label", ":30:16: error[AOT346]: enum member Activation.RELU has .name "
     "and .value, not .label"),
    ("Activation.RELU + 1", ":30:16: error["),
])
def test_enum_misuse_is_located(use: str, message: str) -> None:
    out = build_errors(_ENUMS + f"""

    class M(nn.Module):
        def apply(self, x):
            return {use}

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    assert message in out, out


@pytest.mark.parametrize("body, message", [
    ("    A = 1\n    B = 1\n", ":11:5: error[AOT102]: @enum.unique: E.B repeats the value of E.A"),
    ("    A = 1\n\n    def f(self):\n        return 1\n",
     ":12:5: error[AOT102]: enum E: an enum body may contain members (NAME = value) and a "
     "docstring only"),
])
def test_enum_definitions_outside_the_language_are_located(body: str, message: str) -> None:
    out = build_errors("import enum\n\n\n@enum.unique\nclass E(enum.Enum):\n" + body + """

class M(nn.Module):
    def apply(self, x):
        return x * E.A.value

aot.target("t", M, x=aot.f32[2, 3])
""")
    assert message in out, out


# ------------------------------------------------------------- 5. determinants (flows)


def test_an_invertible_1x1_convolution_with_scipy_linalg() -> None:
    """Glow's invertible 1x1 convolution as flax.nn flows wrote it: a (c, c) weight, its
    log-determinant through `jnp.linalg.slogdet`, `jax.scipy.linalg.det` and the inverse for
    the reverse pass through `jax.scipy.linalg.inv`; checked against jax on the same
    parameters."""
    m = build("""
    import jax.scipy.linalg


    class InvConv(nn.Module):
        def apply(self, x, reverse=False):
            c = x.shape[-1]
            w = self.param("w", (c, c), nn.initializers.orthogonal())
            logdet = x.shape[1] * x.shape[2] * jnp.linalg.slogdet(w)[1]
            det = jax.scipy.linalg.det(w)
            if reverse:
                return x @ jax.scipy.linalg.inv(w), -logdet, det
            return x @ w, logdet, det

    aot.target("fwd", InvConv, x=aot.f32[1, 2, 2, 3])
    aot.target("rev", InvConv.partial(reverse=True), x=aot.f32[1, 2, 2, 3])
    """)
    params = m.fwd.init(jax.random.key(0))[0]
    w = np.asarray(params["w"], np.float64)
    x = _x(1, 2, 2, 3)
    (z, logdet, det), _ = m.fwd.apply(params, {}, x)
    (back, neg, _), _ = m.rev.apply(params, {}, z)
    np.testing.assert_allclose(z, x @ w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logdet, 4 * np.linalg.slogdet(w)[1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(det, np.linalg.det(w), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(back, x, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(neg, -logdet, rtol=1e-6)
    assert "jax.scipy.linalg.inv(" in m.__aotflax_text__


def test_scipy_linalg_outside_the_table_is_located() -> None:
    out = build_errors("""
    import jax.scipy.linalg


    class M(nn.Module):
        def apply(self, x):
            return jax.scipy.linalg.expm(x)

    aot.target("t", M, x=aot.f32[3, 3])
    """)
    assert ":11:16: error[AOT346]: jax.scipy.linalg.expm is not supported by aotflax" in out, out


# ------------------------------------------------------------- 6. chex assertions


def test_chex_assertions_are_checked_at_build_time_and_emit_nothing() -> None:
    import flax.linen as linen

    m = build("""
    import chex


    class M(nn.Module):
        def apply(self, x, y):
            chex.assert_rank(x, 3)
            chex.assert_rank([x, y], [3, 2])
            chex.assert_shape(x, (2, None, 4))
            chex.assert_shape([x, y], [(..., 4), (2, None)])
            chex.assert_equal_shape([x, x * 2])
            chex.assert_equal_rank([x[0], y])
            chex.assert_axis_dimension(x, -1, 4)
            return nn.Dense(x, 3, name="fc")

    aot.target("t", M, x=aot.f32[2, 5, 4], y=aot.f32[2, 5])
    """)
    assert "chex" not in m.__aotflax_text__
    params = m.t.init(jax.random.key(0))[0]
    x = _x(2, 5, 4)
    got, _ = m.t.apply(params, {}, x, _x(2, 5))
    want = linen.Dense(3).apply({"params": params["fc"]}, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("check, message", [
    ("chex.assert_shape(x, (2, 4))", "input 0 has shape (2, 5, 4), expected (2, 4)"),
    ("chex.assert_rank(x, 2)", "input 0 has rank 3, expected 2"),
    ("chex.assert_equal_shape([x, x[0]])", "the inputs have shapes (2, 5, 4), (5, 4)"),
    ("chex.assert_axis_dimension(x, 1, 7)", "axis 1 of f32[2, 5, 4] has size 5, expected 7"),
    ("chex.assert_rank(x, 2, custom_message='per example')",
     "input 0 has rank 3, expected 2: per example"),
])
def test_a_failed_chex_assertion_is_located(check: str, message: str) -> None:
    out = build_errors(f"""
    import chex


    class M(nn.Module):
        def apply(self, x):
            {check}
            return x

    aot.target("t", M, x=aot.f32[2, 5, 4])
    """)
    assert ":11:9: error[AOT300]: model assertion failed: chex." in out, out
    assert message in out, out


# ------------------------------------------------------------- 7. einops' rearrange


def test_rearrange_patterns_are_reshapes_and_transposes() -> None:
    """A vision transformer's patch embedding and token shuffles written with einops:
    checked against numpy's reshape and transpose, and Linen's Dense on the patches."""
    import flax.linen as linen

    m = build("""
    from einops import rearrange
    import einops


    class Patches(nn.Module):
        def apply(self, x, patch=2):
            p = rearrange(x, "b (h p1) (w p2) c -> b (h w) (p1 p2 c)", p1=patch, p2=patch)
            tokens = nn.Dense(p, 5, name="embed")
            heads = einops.rearrange(tokens, "b n (h d) -> b h n d", h=1)
            flat = rearrange(x, "b h w c -> b (h w) c")
            chw = rearrange(x, "b h w c -> b c h w 1")
            same = rearrange(x, "b h w c -> b h w c")
            return tokens, heads, flat, chw, same

    aot.target("t", Patches, x=aot.f32[2, 4, 6, 3])
    """)
    assert "einops" not in m.__aotflax_text__ and "jnp.transpose(" in m.__aotflax_text__
    params = m.t.init(jax.random.key(0))[0]
    x = _x(2, 4, 6, 3)
    (tokens, heads, flat, chw, same), _ = m.t.apply(params, {}, x)
    patches = x.reshape(2, 2, 2, 3, 2, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 6, 12)
    want = linen.Dense(5).apply({"params": params["embed"]}, patches)
    np.testing.assert_allclose(tokens, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(heads, np.asarray(want)[:, None], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(flat, x.reshape(2, 24, 3))
    np.testing.assert_array_equal(chw, x.transpose(0, 3, 1, 2)[..., None])
    np.testing.assert_array_equal(same, x)


@pytest.mark.parametrize("call, message", [
    ('rearrange(x, "b h w -> b (h w)")', "AOT203]: einops.rearrange 'b h w -> b (h w)': the "
     "left side names 3 axes, the input f32[2, 4, 6, 3] has 4"),
    ('rearrange(x, "b (h p) w c -> b h p w c", p=3)', "AOT210]: einops.rearrange 'b (h p) w c "
     "-> b h p w c': an axis of size 4 does not split into (h p)"),
    ('rearrange(x, "b h w c -> b h w")', "AOT203]: einops.rearrange 'b h w c -> b h w': both "
     "sides must name the same axes, each once (c)"),
    ('rearrange(x, "b (h ...) -> b h ...")', "'...' may not be inside parentheses on the "
     "left side"),
    ('rearrange(x, "b (h p q) w c -> b h p q w c")', "give the sizes of all but one of (h p q)"),
])
def test_rearrange_misuse_is_located(call: str, message: str) -> None:
    out = build_errors(f"""
    from einops import rearrange


    class M(nn.Module):
        def apply(self, x):
            return {call}

    aot.target("t", M, x=aot.f32[2, 4, 6, 3])
    """)
    assert ":11:16: error[" in out and message in out, out
