"""DSL features beyond single layers: methods, weight tying, Sequential, scan."""

import textwrap

import flax.linen as ln
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build, build_errors, perturbed

TIED_LM = """
class LM(nn.Module):
    def apply(self, tokens, vocab: int = 11, dim: int = 8):
        embed = nn.Embed.shared(num_embeddings=vocab, features=dim, name="embed")
        x = self.body(embed(tokens))
        w = self.get_param("embed")["embedding"]
        return embed.attend(x), x @ w.T

    @nn.module_method
    def body(self, x, width: int = 8):
        return nn.LayerNorm(nn.Dense(x, width))

    @nn.module_method
    def encode(self, tokens, vocab: int = 11, dim: int = 8):
        embed = nn.Embed.shared(num_embeddings=vocab, features=dim, name="embed")
        return self.body(embed(tokens))

aot.target("lm", LM, tokens=aot.i32[2, 5])
aot.target("lm_encode", LM, tokens=aot.i32[2, 5], method="encode")
"""


@pytest.fixture(scope="module")
def lm():
    return build(TIED_LM)


def test_methods_share_one_parameter_tree(lm):
    assert jax.tree_util.tree_structure(lm.lm.PARAM_SHAPES) == jax.tree_util.tree_structure(
        lm.lm_encode.PARAM_SHAPES)
    params, state = lm.lm.init(jax.random.key(0))
    tokens = np.arange(10, dtype=np.int32).reshape(2, 5)
    (logits, tied), _ = lm.lm.apply(params, state, tokens)
    encoded, _ = lm.lm_encode.apply(params, state, tokens)
    # attend and get_param read the same embedding: weight tying
    np.testing.assert_allclose(logits, tied, rtol=1e-6)
    np.testing.assert_allclose(logits, encoded @ params["embed"]["embedding"].T, rtol=1e-5)


def test_method_call_matches_linen(lm):
    class Body(ln.Module):
        @ln.compact
        def __call__(self, tokens):
            embed = ln.Embed(11, 8, name="embed")
            x = ln.LayerNorm()(ln.Dense(8)(embed(tokens)))
            return embed.attend(x)

    tokens = np.arange(10, dtype=np.int32).reshape(2, 5)
    variables = Body().init(jax.random.key(1), tokens)
    params, state = lm.lm.init(jax.random.key(0))
    assert jax.tree_util.tree_map(np.shape, params) == jax.tree_util.tree_map(
        np.shape, dict(variables["params"]))
    variables = {"params": perturbed(variables["params"], 1)}  # no zero bias, no unit scale
    (logits, _), _ = lm.lm.apply(variables["params"], state, tokens)
    np.testing.assert_allclose(logits, Body().apply(variables, tokens), rtol=1e-5, atol=1e-6)


#: A module whose method reads, with self.get_param, the parameter its apply declares.
SCALED = """
class Scaled(nn.Module):
    def apply(self, x):
        return x * self.param("scale", x.shape[-1:], nn.initializers.ones)

    @nn.module_method
    def l2(self):
        return jnp.sum(self.get_param("scale") ** 2)
"""


def test_a_shared_modules_method_reads_what_its_apply_declared():
    # flax.nn's tests: `layer = M.shared(); layer(x); layer.l2()`, where the module method
    # reads with self.get_param a parameter only `apply` declares
    m = build(SCALED + textwrap.dedent("""

    class Net(nn.Module):
        def apply(self, x):
            layer = Scaled.shared(name="scaled")
            y = layer(x)
            return y, layer.l2()

    aot.target("t", Net, x=aot.f32[3])
    """))

    class Scaled(ln.Module):
        def setup(self):
            self.scale = self.param("scale", ln.initializers.ones, (3,))

        def __call__(self, x):
            return x * self.scale

        def l2(self):
            return jnp.sum(self.scale ** 2)

    class Net(ln.Module):
        @ln.compact
        def __call__(self, x):
            layer = Scaled(name="scaled")
            return layer(x), layer.l2()

    x = np.random.default_rng(0).standard_normal(3).astype(np.float32)
    params, state = m.t.init(jax.random.key(0))
    assert jax.tree_util.tree_map(np.shape, params) == {"scaled": {"scale": (3,)}}
    params = perturbed(params, 2)
    (y, l2), _ = m.t.apply(params, state, x)
    want_y, want_l2 = Net().apply({"params": params}, x)
    np.testing.assert_allclose(y, want_y, rtol=1e-6)
    np.testing.assert_allclose(l2, want_l2, rtol=1e-6)
    # before `apply` has declared it, the method has nothing to read, as in flax.nn
    errors = build_errors(SCALED + textwrap.dedent("""

    class Net(nn.Module):
        def apply(self, x):
            layer = Scaled.shared(name="scaled")
            return layer.l2() + layer(x)

    aot.target("t", Net, x=aot.f32[2, 3])
    """))
    assert "error[AOT354]: no parameter or submodule 'scale' has been declared" in errors


def test_class_attributes_of_a_module():
    # constants in the class body, as Python runs it: in order, seeing earlier ones
    m = build("""
    WIDTH = 3

    class Block(nn.Module):
        FEATURES = WIDTH + 1
        SHAPE: tuple = (FEATURES, 2)

        def apply(self, x):
            return nn.Dense(x, self.FEATURES)

    class Net(nn.Module):
        def apply(self, x):
            y = Block(x)
            return jnp.zeros(Block.SHAPE) + y.shape[-1]

    aot.target("t", Net, x=aot.f32[2, 5])
    """)
    params, state = m.t.init(jax.random.key(0))
    assert params["Block_0"]["Dense_0"]["kernel"].shape == (5, 4)
    out, _ = m.t.apply(params, state, np.ones((2, 5), np.float32))
    np.testing.assert_array_equal(out, np.full((4, 2), 4.0))


def test_checkpoint_and_remat_wrap_a_function_of_arrays():
    m = build("""
    def block(x, w):
        return jnp.tanh(x @ w) * 2.0

    @jax.remat
    def squash(x):
        return jnp.sin(x) ** 2

    class Net(nn.Module):
        def apply(self, x):
            w = self.param("w", (3, 3), nn.initializers.normal(1.0))
            y = jax.checkpoint(block)(x, w)
            return squash(jax.checkpoint(block, prevent_cse=False)(y, w))

    aot.target("t", Net, x=aot.f32[2, 3])
    """)
    params, state = m.t.init(jax.random.key(0))
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    w = params["w"]
    want = jnp.sin(jnp.tanh(jnp.tanh(x @ w) * 2.0 @ w) * 2.0) ** 2
    got, _ = m.t.apply(params, state, x)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # the gradient recomputes: the checkpoint reaches jax
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda p: m.t.apply(p, state, x)[0].sum()))(params))
    assert jaxpr.count("checkpoint[") + jaxpr.count("remat") >= 3, jaxpr
    assert "jax.checkpoint(block, prevent_cse=False)(" in m.__aotflax_text__
    errors = build_errors("""
    class Net(nn.Module):
        def apply(self, x):
            return jax.checkpoint(lambda v: nn.Dense(v, 3))(x)

    aot.target("t", Net, x=aot.f32[2, 3])
    """)
    assert "error[AOT365]: a function given to jax.checkpoint may not use layers" in errors


def test_static_methods_and_method_decorators_of_a_module():
    m = build("""
    class Net(nn.Module):
        @staticmethod
        def scale(x, k=2.0):
            return x * k

        def apply(self, x):
            return self.scale(x) + Net.scale(x, 3.0)

    aot.target("t", Net, x=aot.f32[2])
    """)
    out, _ = m.t.apply({}, {}, np.ones(2, np.float32))
    np.testing.assert_array_equal(out, np.full(2, 5.0, np.float32))
    errors = build_errors("""
    class Net(nn.Module):
        @jax.jit
        def helper(self, x):
            return x

        def apply(self, x):
            return self.helper(x)

    aot.target("t", Net, x=aot.f32[2])
    """)
    assert "error[AOT325]: method helper of module Net: only @nn.module_method, " \
        "@staticmethod and @classmethod are supported" in errors


def test_a_decorated_module_method_is_refused_only_where_it_is_used():
    """Old flax.nn modules kept training helpers under decorators the language does not
    take (`@jax.jit def loss(...)`): no target uses them, so the module builds; a use
    (through the class, self, or a target's method=) is AOT325 there, with a note at the
    decorator."""
    source = """
    class Net(nn.Module):
        def apply(self, x):
            return {inner}

        @jax.jit
        def loss(cls, params, x):
            return cls.call(params, x).sum()

        @property
        def width(self):
            return 3

    class User(nn.Module):
        def apply(self, x):
            return {outer}

    aot.target("t", User, x=aot.f32[2, 4])
    {extra}
    """
    plain = {"inner": "nn.Dense(x, 3)", "outer": "Net(x)", "extra": ""}
    m = build(source.format(**plain))
    params, _ = m.t.init(jax.random.key(0))
    assert params["Net_0"]["Dense_0"]["kernel"].shape == (4, 3)
    for inner, outer in (("nn.Dense(x, 3)", "Net.loss({}, x)"), ("self.loss({}, x)", "Net(x)")):
        errors = build_errors(source.format(inner=inner, outer=outer, extra=""))
        assert "error[AOT325]: method loss of module Net: only @nn.module_method, " \
            "@staticmethod and @classmethod are supported" in errors, errors
        assert "note: decorated here" in errors and "@jax.jit" in errors
    errors = build_errors(source.format(
        **{**plain, "extra": 'aot.target("m", Net, x=aot.f32[2, 4], method="loss")'}))
    assert "error[AOT325]: method loss of module Net" in errors, errors


def test_sequential_names_layers_in_enclosing_scope():
    m = build("""
    class Net(nn.Module):
        def apply(self, x):
            x = nn.Dense(x, 4)
            seq = nn.Sequential([nn.Dense.partial(features=6), nn.relu,
                                 nn.Dense.partial(features=3)])
            return seq(x)

    aot.target("t", Net, x=aot.f32[2, 5])
    """)

    class Net(ln.Module):
        @ln.compact
        def __call__(self, x):
            x = ln.Dense(4)(x)
            return ln.Sequential([ln.Dense(6), ln.relu, ln.Dense(3)])(x)

    x = np.linspace(-1, 1, 10, dtype=np.float32).reshape(2, 5)
    variables = Net().init(jax.random.key(0), x)
    params, state = m.t.init(jax.random.key(0))
    assert jax.tree_util.tree_map(np.shape, params) == jax.tree_util.tree_map(
        np.shape, dict(variables["params"]))
    variables = {"params": perturbed(variables["params"], 2)}  # no zero bias
    y, _ = m.t.apply(variables["params"], state, x)
    np.testing.assert_allclose(y, Net().apply(variables, x), rtol=1e-5, atol=1e-6)


RNN = """
class RNN(nn.Module):
    def apply(self, xs, hidden: int = 6):
        cell = nn.Dense.shared(features=hidden, name="cell")
        h0 = jnp.zeros((xs.shape[0], hidden))
        def step(h, x):
            h = jnp.tanh(cell(jnp.concatenate([h, x], axis=-1)))
            return h, h * 2.0
        h, ys = jax.lax.scan(step, h0, xs.transpose((1, 0, 2)))
        return h, ys

aot.target("rnn", RNN, xs=aot.f32[2, {T}, 3])
"""


def test_scan_is_a_real_scan_and_matches_a_python_loop():
    m = build(RNN.replace("{T}", "7"))
    assert "jax.lax.scan(step" in m.__aotflax_text__
    params, state = m.rnn.init(jax.random.key(0))
    params = perturbed(params, 3)  # no zero bias
    xs = np.linspace(-1, 1, 42, dtype=np.float32).reshape(2, 7, 3)
    (h, ys), _ = m.rnn.apply(params, state, xs)
    k, b = params["cell"]["kernel"], params["cell"]["bias"]
    ref_h, ref_ys = jnp.zeros((2, 6)), []
    for t in range(7):
        ref_h = jnp.tanh(jnp.concatenate([ref_h, xs[:, t]], axis=-1) @ k + b[None])
        ref_ys.append(ref_h * 2.0)
    np.testing.assert_allclose(h, ref_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ys, jnp.stack(ref_ys), rtol=1e-5, atol=1e-6)


def test_scan_code_does_not_grow_with_sequence_length():
    short = build(RNN.replace("{T}", "3"), verify=False).__aotflax_text__
    long = build(RNN.replace("{T}", "300"), verify=False).__aotflax_text__
    assert len(short.splitlines()) == len(long.splitlines())


def test_scan_carry_type_mismatch_is_located():
    errors = build_errors("""
    class Bad(nn.Module):
        def apply(self, xs):
            def step(h, x):
                return jnp.concatenate([h, x], axis=-1), x
            return jax.lax.scan(step, jnp.zeros((2, 3)), xs)

    aot.target("t", Bad, xs=aot.f32[4, 2, 3])
    """)
    assert "error[AOT364]" in errors and "same types as init" in errors


def test_get_param_before_declaration_is_an_error():
    errors = build_errors("""
    class Bad(nn.Module):
        def apply(self, x):
            w = self.get_param("embed")
            return x

    aot.target("t", Bad, x=aot.f32[2, 3])
    """)
    assert "error[AOT354]" in errors and "'embed'" in errors


def test_bidirectional_scan_runs_one_direction_reversed():
    m = build("""
    class BiRNN(nn.Module):
        def apply(self, xs, hidden: int = 4):
            fwd = nn.Dense.shared(features=hidden, name="fwd")
            bwd = nn.Dense.shared(features=hidden, name="bwd")
            h0 = jnp.zeros((xs.shape[1], hidden))

            def forward(h, x):
                h = jnp.tanh(fwd(jnp.concatenate([h, x], axis=-1)))
                return h, h

            def backward(h, x):
                h = jnp.tanh(bwd(jnp.concatenate([h, x], axis=-1)))
                return h, h

            _, ys_f = jax.lax.scan(forward, h0, xs)
            _, ys_b = jax.lax.scan(backward, h0, xs, reverse=True)
            return jnp.concatenate([ys_f, ys_b], axis=-1)

    aot.target("bi", BiRNN, xs=aot.f32[5, 2, 3])
    """)
    assert "reverse=True" in m.__aotflax_text__
    params, state = m.bi.init(jax.random.key(0))
    params = perturbed(params, 4)  # no zero bias
    xs = np.linspace(-1, 1, 30, dtype=np.float32).reshape(5, 2, 3)
    ys, _ = m.bi.apply(params, state, xs)

    def run(p, order):
        h, out = jnp.zeros((2, 4)), {}
        for t in order:
            h = jnp.tanh(jnp.concatenate([h, xs[t]], axis=-1) @ p["kernel"] + p["bias"][None])
            out[t] = h
        return jnp.stack([out[t] for t in range(5)])

    expected = jnp.concatenate([run(params["fwd"], range(5)),
                                run(params["bwd"], reversed(range(5)))], axis=-1)
    np.testing.assert_allclose(ys, expected, rtol=1e-5, atol=1e-6)
