"""flax.nn's other ways to make and apply modules, against Linen twins.

- a built-in layer subclassed to override `param` (weight-standardized
  convolutions, as BiT and ViT-hybrid code writes them): the layer's rule runs,
  each parameter goes through the subclass's `param`;
- `Module.call(params, *inputs, **hyperparameters)`: a built-in or user module
  applied with parameters the caller passes (hypernetworks, tied weights);
- `@nn.module` function modules.
"""

from __future__ import annotations

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import HEADER, build, build_errors, scratch_folder

from aotflax.driver import front_end

RTOL, ATOL = 1e-5, 1e-5


def _tree(tree):
    if hasattr(tree, "items"):
        return {k: _tree(v) for k, v in tree.items()}
    return (tuple(tree.shape), str(tree.dtype))


def _random_like(tree, seed: int):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(rng.standard_normal(a.shape), a.dtype) for a in leaves])


def _plain(tree):
    return {k: _plain(v) for k, v in tree.items()} if hasattr(tree, "items") else tree


def _check(target, twin, *inputs, seed: int = 0):
    shapes = _plain(jax.eval_shape(twin.init, jax.random.key(0), *inputs)["params"])
    params, state = target.init(jax.random.key(0))
    assert _tree(params) == _tree(shapes)
    values = _random_like(shapes, seed)
    want = twin.apply({"params": values}, *inputs)
    got, _ = target.apply(values, state, *inputs)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------ layer subclasses

STD_CONV = """
def standardize(x, axis, eps):
    x = x - jnp.mean(x, axis=axis, keepdims=True)
    x = x / jnp.sqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=True) + eps)
    return x


class StdConv(nn.Conv):
    def param(self, name, shape, initializer):
        param = super().param(name, shape, initializer)
        if name == 'kernel':
            param = standardize(param, axis=[0, 1, 2], eps=1e-5)
        return param


class ScaledDense(nn.Dense):
    def param(self, name, shape, init, dtype):
        p = super().param(name, shape, init, dtype)
        return p * 0.5 if name == "bias" else p


class Root(nn.Module):
    def apply(self, x):
        conv = StdConv.partial(bias=False)
        x = conv(x, 4, (3, 3), name='conv_root')
        x = StdConv(x, 4, (1, 1), strides=(2, 2))
        shared = StdConv.shared(features=4, kernel_size=(3, 3), name="shared")
        x = shared(x) + shared(x * 2.0)
        return ScaledDense(x.reshape((x.shape[0], -1)), 3)


aot.target("root", Root, x=aot.f32[2, 6, 6, 3])
"""


def _standardize(x, axis, eps):
    x = x - jnp.mean(x, axis=axis, keepdims=True)
    return x / jnp.sqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=True) + eps)


class LStdConv(linen.Conv):
    def param(self, name, init_fn, *init_args, **init_kwargs):
        param = super().param(name, init_fn, *init_args, **init_kwargs)
        return _standardize(param, (0, 1, 2), 1e-5) if name == "kernel" else param


class LScaledDense(linen.Dense):
    def param(self, name, init_fn, *init_args, **init_kwargs):
        p = super().param(name, init_fn, *init_args, **init_kwargs)
        return p * 0.5 if name == "bias" else p


class LRoot(linen.Module):
    @linen.compact
    def __call__(self, x):
        x = LStdConv(4, (3, 3), use_bias=False, name="conv_root")(x)
        x = LStdConv(4, (1, 1), strides=(2, 2), name="StdConv_0")(x)
        shared = LStdConv(4, (3, 3), name="shared")
        x = shared(x) + shared(x * 2.0)
        return LScaledDense(3, name="ScaledDense_0")(x.reshape((x.shape[0], -1)))


def test_weight_standardized_conv_matches_linen() -> None:
    m = build(STD_CONV)
    _check(m.root, LRoot(), _x(2, 6, 6, 3))
    # the kernel is read once per call and standardized before the convolution
    text = m.__aotflax_text__
    assert 'params["conv_root"]["kernel"]' in text and "jnp.mean(" in text


def test_layer_subclass_errors() -> None:
    out = build_errors("""
    class Wrong(nn.Conv):
        def apply(self, x):
            return x

    class Bad(nn.Dense):
        def param(self, name, shape, init):
            return super().param(name, shape, init)[0]

    class Net(nn.Module):
        def apply(self, x):
            y = Wrong(x)
            return Bad(x, 3)

    aot.target("net", Net, x=aot.f32[2, 4])
    """)
    assert "error[AOT374]: class Wrong subclasses nn.Conv and overrides apply" in out
    assert "hint: to write a new layer, subclass nn.Module" in out
    assert "error[AOT374]: Bad.param returns f32[3] for 'kernel', which nn.Dense declares " \
           "f32[4, 3]" in out


# ------------------------------------------------------------------ Module.call

CALL = """
@nn.module
def MLP(x, features, hidden=6):
    return nn.Dense(nn.relu(nn.Dense(x, hidden)), features)


class Hyper(nn.Module):
    def apply(self, x, z):
        w = nn.Dense(z, 4 * 3, name="hyper")      # weights made by another network
        b = self.param("b", (3,), nn.initializers.normal(stddev=1.0))
        y = nn.Dense.call({"kernel": w.reshape((4, 3)), "bias": b}, x, features=3)
        return y


class Tied(nn.Module):
    def apply(self, x):
        y = MLP(x, 3, name="mlp")
        twice = MLP.call(self.get_param("mlp"), x * 2.0, 3)
        return y + twice


aot.target("hyper", Hyper, x=aot.f32[2, 4], z=aot.f32[1, 2])
aot.target("tied", Tied, x=aot.f32[2, 4])
"""


class LMLP(linen.Module):
    features: int
    hidden: int = 6

    @linen.compact
    def __call__(self, x):
        h = linen.relu(linen.Dense(self.hidden)(x))  # Dense_0, as called first
        return linen.Dense(self.features)(h)


class LHyper(linen.Module):
    @linen.compact
    def __call__(self, x, z):
        w = linen.Dense(12, name="hyper")(z)
        b = self.param("b", linen.initializers.normal(1.0), (3,))
        return linen.Dense(3).apply({"params": {"kernel": w.reshape((4, 3)), "bias": b}}, x)


class LTied(linen.Module):
    @linen.compact
    def __call__(self, x):
        mlp = LMLP(3, name="mlp")
        return mlp(x) + mlp(x * 2.0)


@pytest.fixture(scope="module")
def call_module():
    return build(CALL)


def test_layer_call_with_generated_weights(call_module) -> None:
    _check(call_module.hyper, LHyper(), _x(2, 4), _x(1, 2, seed=1))
    assert call_module.hyper.PARAM_SHAPES.keys() == {"hyper", "b"}  # nothing declared by .call


def test_user_module_call_with_tied_parameters(call_module) -> None:
    _check(call_module.tied, LTied(), _x(2, 4))
    assert "mlp(params[\"mlp\"], x)" in call_module.__aotflax_text__


def test_module_call_errors() -> None:
    out = build_errors("""
    class Net(nn.Module):
        def apply(self, x):
            k = self.param("k", (4, 3), nn.initializers.ones)
            a = nn.Dense.call({"kernel": k}, x, 3)
            b = nn.Dense.call({"kernel": k.T, "bias": k[0]}, x, 3)
            c = nn.Dense.call(k, x, 3)
            d = nn.BatchNorm.call({"scale": k[0], "bias": k[0]}, x[:, :3])
            e = nn.Dense.call({"kernel": k.astype(jnp.bfloat16), "bias": k[0]}, x, 3)
            return a

    aot.target("net", Net, x=aot.f32[2, 4])
    """)
    assert "error[AOT373]: the parameters given to nn.Dense.call need 'bias' (f32[3]), found " \
           "nothing" in out
    assert "the parameter 'kernel' given to nn.Dense.call is f32[3, 4], but it declares " \
           "f32[4, 3]" in out
    assert "params must be a dict of arrays (nested for submodules), got array f32[4, 3]" in out
    assert "cannot keep state ('batch_stats/mean')" in out
    assert "is bf16[4, 3], but it declares f32[4, 3]" in out
    assert "GivenScope" not in out


def test_user_module_call_errors() -> None:
    out = build_errors("""
    class Block(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3, name="inner")

    class Net(nn.Module):
        def apply(self, x):
            y = Block(x, name="block")
            p = self.get_param("block")
            return Block.call({"other": p["inner"]}, x)

    aot.target("net", Net, x=aot.f32[2, 4])
    """)
    assert "error[AOT373]: Block.call: the parameters given need 'inner/kernel' (f32[4, 3]), " \
           "found nothing" in out


# ------------------------------------------------------------------ @nn.module

FUNCTION_MODULES = """
@nn.module
def ConvBlock(x, features, kernel_size=(3, 3), **kwargs):
    y = nn.Conv(x, features, kernel_size, **kwargs)
    return nn.relu(y)


@nn.module
def Net(images, width=4):
    Block = ConvBlock.partial(features=width)
    x = Block(images)
    x = Block(x, kernel_size=(1, 1), bias=False)
    shared = ConvBlock.shared(features=width, name="shared")
    x = shared(x) + shared(x)
    return jnp.mean(x, axis=(1, 2))


aot.target("net", Net, images=aot.f32[2, 5, 5, 3])
"""


class LConvBlock(linen.Module):
    features: int
    kernel_size: tuple = (3, 3)
    use_bias: bool = True

    @linen.compact
    def __call__(self, x):
        return linen.relu(linen.Conv(self.features, self.kernel_size,
                                     use_bias=self.use_bias)(x))


class LNet(linen.Module):
    @linen.compact
    def __call__(self, images):
        x = LConvBlock(4, name="ConvBlock_0")(images)
        x = LConvBlock(4, (1, 1), use_bias=False, name="ConvBlock_1")(x)
        shared = LConvBlock(4, name="shared")
        x = shared(x) + shared(x)
        return jnp.mean(x, axis=(1, 2))


def test_function_modules_match_linen() -> None:
    m = build(FUNCTION_MODULES)
    _check(m.net, LNet(), _x(2, 5, 5, 3))
    assert "def conv_block_kernel_size_3_3(params, x):" in m.__aotflax_text__


def test_function_module_errors() -> None:
    out = build_errors("""
    import functools

    @nn.module
    @nn.module_method
    def Block(x):
        return x

    class Net(nn.Module):
        def apply(self, x):
            return Block(x)

    aot.target("net", Net, x=aot.f32[2, 4])
    """)
    assert "error[AOT325]: @nn.module cannot be combined with other decorators" in out


def test_a_name_bound_by_partial_is_the_default_a_call_overrides() -> None:
    """Old flax.nn: `partial(name=...)` gives the module's default name; a call's own `name=`
    wins over it (flax/nn/base.py: `if name is None: name = cls._default_name()`); a shared
    module is named by `shared(name=)`, a target's root by nothing."""
    m = build("""
    class Inner(nn.Module):
        def apply(self, x, features):
            return nn.Dense(x, features)


    class M(nn.Module):
        def apply(self, x):
            d = nn.Dense.partial(features=3, name="a")
            i = Inner.partial(features=3, name="c")
            s = nn.Dense.partial(features=3, name="unused").shared(name="s")
            y = d(x) + d(x, name="b") + i(x) + i(x, name="e") + s(x) + s(x)
            given = {"kernel": jnp.ones((4, 3)), "bias": jnp.zeros((3,))}
            return y + nn.Dense.partial(features=3, name="f").call(given, x)

    aot.target("t", M.partial(name="root"), x=aot.f32[2, 4])
    """)
    params, _ = m.t.init(jax.random.key(0))
    assert _tree(params) == {
        "a": {"kernel": ((4, 3), "float32"), "bias": ((3,), "float32")},
        "b": {"kernel": ((4, 3), "float32"), "bias": ((3,), "float32")},
        "c": {"Dense_0": {"kernel": ((4, 3), "float32"), "bias": ((3,), "float32")}},
        "e": {"Dense_0": {"kernel": ((4, 3), "float32"), "bias": ((3,), "float32")}},
        "s": {"kernel": ((4, 3), "float32"), "bias": ((3,), "float32")}}
    params = _random_like(params, 1)
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    got, _ = m.t.apply(params, {}, x)

    def dense(p):
        return x @ np.asarray(p["kernel"]) + np.asarray(p["bias"])

    want = (dense(params["a"]) + dense(params["b"]) + dense(params["c"]["Dense_0"])
            + dense(params["e"]["Dense_0"]) + 2 * dense(params["s"]) + x.sum(-1, keepdims=True))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    errors = build_errors("""
    class M(nn.Module):
        def apply(self, x):
            d = nn.Dense.partial(features=3, name="a")
            return d(x) + d(x)

    aot.target("t", M, x=aot.f32[2, 4])
    """)
    assert "AOT311" in errors and "named 'a' already exists" in errors, errors


INHERITED = """
class Base(nn.Module):
    FEATURES = 4

    def project(self, x, n, name="proj"):
        return nn.Dense(x, n, name=name)

    @staticmethod
    def squash(x):
        return jnp.tanh(x)

    def apply(self, x):
        return self.squash(self.project(x, self.FEATURES))


class Child(Base):
    FEATURES = 6

    def apply(self, x, scale=2.0):
        y = super().apply(x)
        return self.project(y, 3, name="head") * scale


class Grandchild(Child):
    def apply(self, x):
        return super(Grandchild, self).apply(x, scale=0.5) + 1.0


class Net(nn.Module):
    def apply(self, x):
        return Grandchild(x), Base(x)

aot.target("net", Net, x=aot.f32[2, 3])
"""


class _LChild(linen.Module):
    features: int
    scale: float

    @linen.compact
    def __call__(self, x):
        y = jnp.tanh(linen.Dense(self.features, name="proj")(x))
        return linen.Dense(3, name="head")(y) * self.scale


def test_a_module_derived_from_a_module_inherits_its_methods_and_reaches_them_by_super() -> None:
    """flax.nn modules were Python classes: `class Child(Base)` takes Base's methods, static
    methods and class attributes (overridden ones its own), and `super().apply(x)` or
    `super(Cls, self).apply(x)` runs the base's method in the same scope, so its layers are
    the child's.  Trees and values equal a Linen twin's."""
    m = build(INHERITED)
    params, _ = m.net.init(jax.random.key(0))
    assert _tree(params) == {
        "Grandchild_0": {"proj": {"kernel": ((3, 6), "float32"), "bias": ((6,), "float32")},
                         "head": {"kernel": ((6, 3), "float32"), "bias": ((3,), "float32")}},
        "Base_0": {"proj": {"kernel": ((3, 4), "float32"), "bias": ((4,), "float32")}}}
    params = _random_like(params, 1)
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    (g, b), _ = m.net.apply(params, {}, x)
    want_g = _LChild(6, 0.5).apply({"params": params["Grandchild_0"]}, x) + 1.0
    want_b = jnp.tanh(linen.Dense(4).apply({"params": params["Base_0"]["proj"]}, x))
    np.testing.assert_allclose(g, want_g, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(b, want_b, rtol=RTOL, atol=ATOL)


def test_module_inheritance_errors_are_located() -> None:
    out = build_errors("""
    class A(nn.Module):
        def apply(self, x):
            return x

    class B(nn.Module):
        def apply(self, x):
            return x

    class C(A, B):
        pass

    class Net(nn.Module):
        def apply(self, x):
            return C(x)

    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    assert "error[AOT374]: class C subclasses the module A and something else; a module " \
        "subclass has one base" in out, out
    out = build_errors("""
    class A(nn.Module):
        def apply(self, x):
            return super().apply(x)

    class B(A):
        def apply(self, x):
            return super().missing(x)

    class Net(nn.Module):
        def apply(self, x):
            return B(x)

    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    assert "super() of B has no method 'missing'" in out, out


def test_an_inherited_method_reads_the_names_of_its_own_file() -> None:
    folder = scratch_folder()
    (folder / "base.py").write_text(HEADER + """
WIDTH = 5


class Base(nn.Module):
    def apply(self, x, width=WIDTH):
        return nn.Dense(x, width)
""")
    (folder / "net.py").write_text(HEADER + """
from base import Base

WIDTH = 100


class Child(Base):
    pass


aot.target("net", Child, x=aot.f32[2, 3])
""")
    report = front_end([folder / "base.py", folder / "net.py"], folder)
    assert not report.diagnostics, [d.render() for d in report.diagnostics]
    text = next(f.text for f in report.files if f.module == "net")
    assert "f32[2, 5]" in text and "100" not in text
