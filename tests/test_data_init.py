"""Data-dependent initialization: `init(rng, *example_inputs)` for the targets that need it.

Old flax.nn's `self.param(name, None, init)` (pixelcnn's weight-normalized
layers) initializes a parameter from the activations of a forward pass.  The
generated `init` of such a target takes example inputs and runs the entry's
init variant after the initializers; every other target keeps `init(rng)`.
"""

from __future__ import annotations

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build, build_errors

RTOL, ATOL = 1e-5, 1e-5

WEIGHT_NORM = """
def _l2_normalize(v):
    return v / jnp.sqrt(jnp.sum(jnp.square(v), 0, keepdims=True))


class WNDense(nn.Module):
    def apply(self, inputs, features, init_scale=1.):
        def initializer(key, shape):
            # a (direction, scale, bias) dict; the shape argument is not used
            direction = nn.initializers.normal()(key, (inputs.shape[-1], features),
                                                 jnp.float32)
            unnormed_out = inputs @ _l2_normalize(direction)
            mean = jnp.mean(unnormed_out, 0, keepdims=True)
            var = jnp.std(unnormed_out, 0, keepdims=True)
            return dict(direction=direction, scale=init_scale / var, bias=-mean / var)

        params = self.param('weightnorm_params', None, initializer)
        direction, scale, bias = [params[k] for k in ('direction', 'scale', 'bias')]
        return inputs @ (scale * _l2_normalize(direction)) + bias


class Centered(nn.Module):
    def apply(self, x):
        # a known shape, but the initializer reads the inputs: also from data
        b = self.param("b", (1, x.shape[-1]), lambda key, shape: -jnp.mean(x, 0, keepdims=True))
        return x + b


class Net(nn.Module):
    def apply(self, x, train=False):
        x = WNDense(x, 4)
        x = nn.dropout(nn.relu(nn.Dense(x, 5)), rate=0.5, deterministic=not train)
        x = Centered(x)
        return WNDense(x, 2, init_scale=0.1)


class Plain(nn.Module):
    def apply(self, x):
        return nn.Dense(x, 2)


aot.target("wn", Net, x=aot.f32[16, 3])
aot.target("wn_train", Net.partial(train=True), x=aot.f32[16, 3])
aot.target("plain", Plain, x=aot.f32[16, 3])
"""


def _l2(v):
    return v / jnp.sqrt(jnp.sum(jnp.square(v), 0, keepdims=True))


class LWNDense(linen.Module):
    features: int
    init_scale: float = 1.0

    @linen.compact
    def __call__(self, inputs):
        def initializer(key):
            direction = jax.random.normal(key, (inputs.shape[-1], self.features)) * 1e-2
            out = inputs @ _l2(direction)
            var = jnp.std(out, 0, keepdims=True)
            return dict(direction=direction, scale=self.init_scale / var,
                        bias=-jnp.mean(out, 0, keepdims=True) / var)

        p = self.param("weightnorm_params", initializer)
        return inputs @ (p["scale"] * _l2(p["direction"])) + p["bias"]


class LCentered(linen.Module):
    @linen.compact
    def __call__(self, x):
        return x + self.param("b", lambda key: -jnp.mean(x, 0, keepdims=True))


class LNet(linen.Module):
    @linen.compact
    def __call__(self, x):
        x = LWNDense(4, name="WNDense_0")(x)
        x = LCentered(name="Centered_0")(linen.relu(linen.Dense(5)(x)))
        return LWNDense(2, 0.1, name="WNDense_1")(x)


@pytest.fixture(scope="module")
def wn():
    return build(WEIGHT_NORM)


def _x(seed=0):
    return np.random.default_rng(seed).standard_normal((16, 3)).astype(np.float32) * 3 + 1


def test_init_takes_example_inputs_only_where_needed(wn) -> None:
    assert wn.wn.INIT_INPUTS and not wn.plain.INIT_INPUTS
    params, state = wn.plain.init(jax.random.key(0))
    assert set(params) == {"Dense_0"}
    with pytest.raises(TypeError, match=r"wn.init takes rng and example inputs \(x\), got 0"):
        wn.wn.init(jax.random.key(0))
    with pytest.raises(TypeError, match="plain.init takes only rng"):
        wn.plain.init(jax.random.key(0), _x())
    text = wn.__aotflax_text__
    assert "def _wn_init(rng, x):" in text and "def _plain_init" not in text
    assert "init=_plain_variables.init," in text  # initializers only: no forward pass
    # apply never computes an initializer; the init variant does
    apply_body = text.split("def wn_dense(params, inputs):")[1].split("\ndef ")[0]
    assert "std" not in apply_body and "normal()" not in apply_body


def test_parameter_tree_and_apply_match_linen(wn) -> None:
    x = _x()
    twin = LNet()
    linen_params = jax.tree_util.tree_map(np.asarray, twin.init(jax.random.key(0), x)["params"])
    params, _ = wn.wn.init(jax.random.key(0), x)
    shapes = lambda t: jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), t)  # noqa: E731
    assert shapes(params) == shapes(dict(linen_params))
    assert shapes(wn.wn.PARAM_SHAPES) == shapes(params)
    rng = np.random.default_rng(1)
    values = jax.tree_util.tree_map(
        lambda a: jnp.asarray(rng.standard_normal(a.shape), a.dtype), params)
    got, _ = wn.wn.apply(values, {}, x)
    want = twin.apply({"params": values}, x)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_initialized_from_the_example_inputs(wn) -> None:
    """Each weight-normalized layer starts with normalized outputs on the example batch,
    as old flax.nn's init computed them, and the bias centers its inputs."""
    x = _x()
    params, _ = wn.wn.init(jax.random.key(0), x)
    p0 = params["WNDense_0"]["weightnorm_params"]
    out0 = x @ (p0["scale"] * _l2(p0["direction"])) + p0["bias"]
    np.testing.assert_allclose(jnp.mean(out0, 0), 0, atol=1e-5)
    assert p0["scale"].shape == (1, 4)
    np.testing.assert_allclose(jnp.std(out0, 0), 1, rtol=1e-4)
    h = jax.nn.relu(out0 @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"][None])
    np.testing.assert_allclose(params["Centered_0"]["b"], -jnp.mean(h, 0, keepdims=True),
                               rtol=1e-5, atol=1e-6)
    p1 = params["WNDense_1"]["weightnorm_params"]
    out1 = (h + params["Centered_0"]["b"]) @ (p1["scale"] * _l2(p1["direction"])) + p1["bias"]
    np.testing.assert_allclose(jnp.std(out1, 0), 0.1, rtol=1e-4)
    # deterministic in the key, and the data matters
    again, _ = wn.wn.init(jax.random.key(0), x)
    np.testing.assert_array_equal(again["WNDense_0"]["weightnorm_params"]["scale"],
                                  p0["scale"])
    other, _ = wn.wn.init(jax.random.key(0), x * 2)
    assert not np.allclose(other["WNDense_0"]["weightnorm_params"]["scale"], p0["scale"])
    jitted, _ = jax.jit(wn.wn.init_fn)(jax.random.key(0), x)
    np.testing.assert_allclose(jitted["WNDense_1"]["weightnorm_params"]["bias"], p1["bias"],
                               rtol=1e-5, atol=1e-6)


def test_stochastic_target_initializes_from_data_too(wn) -> None:
    params, _ = wn.wn_train.init(jax.random.key(0), _x())
    out, _ = wn.wn_train.apply(params, {}, _x(), rng=jax.random.key(3))
    assert out.shape == (16, 2) and bool(jnp.all(jnp.isfinite(out)))


def test_data_dependent_errors() -> None:
    out = build_errors("""
    class Net(nn.Module):
        def apply(self, x):
            a = self.param("a", None, nn.initializers.ones)
            b = self.param("b", None, lambda key, shape: [x, x])
            def init(key, shape, dtype):
                return jnp.zeros(shape, dtype) + jnp.mean(x)
            c = nn.Dense(x, 3, kernel_init=init)
            def step(carry, xs):
                w = self.param("w", None, lambda key, shape: jnp.mean(xs))
                return carry, xs * w
            d = jax.lax.scan(step, x[0], x)
            return x

    aot.target("net", Net, x=aot.f32[2, 4])
    """)
    assert "error[AOT352]: self.param('a', None, ...): shape=None initializes the parameter " \
           "from data" in out and "needs a shape" in out
    assert "the initializer returns list of 2; a parameter initialized from data is an array" \
           in out
    assert "initializer init reads arrays of the module's forward pass" in out
    assert "parameters initialized from data inside jax.lax.scan are not supported" in out


def test_a_module_whose_result_is_dropped_is_still_initialized() -> None:
    """flax.nn's init runs the whole apply: a data-initialized layer whose output the
    model drops (a halving left over from an edit) still gets its parameters, though its
    forward code is left out of apply."""
    m = build(WEIGHT_NORM.replace('''        return WNDense(x, 2, init_scale=0.1)''', '''        WNDense(x, 7)
        return WNDense(x, 2, init_scale=0.1)''').split("\naot.target")[0] + """
aot.target("wn", Net, x=aot.f32[16, 3])
""")
    params, _ = m.wn.init(jax.random.key(0), _x())
    assert sorted(params) == ["Centered_0", "Dense_0", "WNDense_0", "WNDense_1", "WNDense_2"]
    assert params["WNDense_1"]["weightnorm_params"]["direction"].shape == (5, 7)
    # apply does not compute the dropped layer
    apply_text = m.__aotflax_text__.split("def net(", 1)[1].split("\ndef ", 1)[0]
    assert apply_text.count("wn_dense(") == 2, apply_text
