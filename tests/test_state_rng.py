"""State and randomness: normalization layers against Linen, dropout, make_rng, user state.

Normalization layers must equal Linen with the same variables (float32 at rtol
1e-5; bfloat16 within a stated tolerance) and BatchNorm must return Linen's
updated `batch_stats`, in float32 whatever the compute dtype.  Randomness is an
explicit `rng`: the same rng gives the same output, another rng another mask,
and the mask equals Linen's `Dropout` given the same key.
"""

from __future__ import annotations

import inspect
import re

import flax.linen as ln
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build, build_errors, perturbed, scope_hash

RNG = np.random.default_rng(0)


def _x(*shape: int, dtype=jnp.float32, scale: float = 3.0):
    return jnp.asarray(RNG.normal(1.0, scale, size=shape), dtype)


def _random_like(tree, seed: int):
    """Variables away from their initial values; running variances stay positive."""
    rng = np.random.default_rng(seed)

    def draw(path, a):
        low = 0.5 if path[-1].key == "var" else -1.0
        return jnp.asarray(rng.uniform(low, 1.5, a.shape), a.dtype)

    return jax.tree_util.tree_map_with_path(draw, tree)


def _close(got, want, rtol=1e-5, atol=1e-6):
    jax.tree_util.tree_map(
        lambda g, w: np.testing.assert_allclose(np.asarray(g, np.float32),
                                                np.asarray(w, np.float32), rtol=rtol, atol=atol),
        got, want)


def _dtypes(tree) -> set[str]:
    return {str(a.dtype) for a in jax.tree_util.tree_leaves(tree)}


# ================================================================ normalization layers

NORMS = """
class Norms(nn.Module):
    def apply(self, x, train: bool = True, dtype=None):
        a = nn.BatchNorm(x, use_running_average=not train, momentum=0.9, dtype=dtype)
        b = nn.BatchNorm(x, not train, axis=1, momentum=0.8, epsilon=1e-3, bias=False,
                         use_fast_variance=False, dtype=dtype)
        c = nn.GroupNorm(x, num_groups=3, dtype=dtype)
        d = nn.GroupNorm(x, num_groups=None, group_size=2, scale=False, use_fast_variance=False,
                         dtype=dtype)
        e = nn.RMSNorm(x, dtype=dtype)
        f = nn.LayerNorm(x, dtype=dtype)
        return a, b, c, d, e, f

class Flat(nn.Module):
    def apply(self, x, train: bool = True):
        return nn.BatchNorm(x, use_running_average=not train), nn.GroupNorm(x, num_groups=2)

aot.target("train", Norms, x=aot.f32[4, 5, 3, 6])
aot.target("infer", Norms.partial(train=False), x=aot.f32[4, 5, 3, 6])
aot.target("train_bf16", Norms.partial(dtype=jnp.bfloat16), x=aot.bf16[4, 5, 3, 6])
aot.target("infer_bf16", Norms.partial(train=False, dtype=jnp.bfloat16), x=aot.bf16[4, 5, 3, 6])
aot.target("train_half_out", Norms.partial(dtype=jnp.float16), x=aot.f32[4, 5, 3, 6])
aot.target("flat", Flat, x=aot.f32[8, 4])
"""


class LinenNorms(ln.Module):
    dtype: object = None

    @ln.compact
    def __call__(self, x, train: bool = True):
        a = ln.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(x)
        b = ln.BatchNorm(use_running_average=not train, axis=1, momentum=0.8, epsilon=1e-3,
                         use_bias=False, use_fast_variance=False, dtype=self.dtype)(x)
        c = ln.GroupNorm(num_groups=3, dtype=self.dtype)(x)
        d = ln.GroupNorm(num_groups=None, group_size=2, use_scale=False,
                         use_fast_variance=False, dtype=self.dtype)(x)
        e = ln.RMSNorm(dtype=self.dtype)(x)
        f = ln.LayerNorm(dtype=self.dtype)(x)
        return a, b, c, d, e, f


class LinenFlat(ln.Module):
    @ln.compact
    def __call__(self, x, train: bool = True):
        return ln.BatchNorm(use_running_average=not train)(x), ln.GroupNorm(num_groups=2)(x)


@pytest.fixture(scope="module")
def norms():
    return build(NORMS)


@pytest.fixture(scope="module")
def norm_vars():
    x = _x(4, 5, 3, 6)
    shapes = jax.eval_shape(lambda: LinenNorms().init(jax.random.key(0), x))
    return _random_like(shapes, 1)


def test_norm_trees_equal_linen(norms, norm_vars):
    params, state = jax.eval_shape(norms.train.init_fn, jax.random.key(0))
    shapes = jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), norm_vars)
    assert jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), params) == shapes["params"]
    assert jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), state) == {
        "batch_stats": shapes["batch_stats"]}
    # BatchNorm over axis=1 keeps statistics of that axis; RMSNorm has no bias
    assert state["batch_stats"]["BatchNorm_1"]["mean"].shape == (5,)
    assert set(params["RMSNorm_0"]) == {"scale"} and set(params["GroupNorm_1"]) == {"bias"}


@pytest.mark.parametrize("train", [True, False])
def test_norms_float32_match_linen(norms, norm_vars, train):
    x = _x(4, 5, 3, 6)
    want, updated = LinenNorms().apply(norm_vars, x, train=train, mutable=["batch_stats"])
    state = {"batch_stats": norm_vars["batch_stats"]}
    target = norms.train if train else norms.infer
    got, new_state = target.apply(norm_vars["params"], state, x)
    _close(got, want)
    if train:
        _close(new_state, updated)
    else:  # evaluation reads the statistics and returns them unchanged
        jax.tree_util.tree_map(np.testing.assert_array_equal, new_state, state)


@pytest.mark.parametrize("train", [True, False])
def test_norms_bfloat16_match_linen_with_float32_statistics(norms, norm_vars, train):
    x = _x(4, 5, 3, 6, dtype=jnp.bfloat16)
    model = LinenNorms(dtype=jnp.bfloat16)
    want, updated = model.apply(norm_vars, x, train=train, mutable=["batch_stats"])
    target = norms.train_bf16 if train else norms.infer_bf16
    assert _dtypes(target.STATE_SHAPES) == {"float32"}
    got, new_state = target.apply(norm_vars["params"], {"batch_stats": norm_vars["batch_stats"]},
                                  x)
    assert _dtypes(got) == {"bfloat16"} and _dtypes(new_state) == {"float32"}
    # Statistics are float32 sums of the same bf16 inputs; the measured difference of the
    # outputs is 0.0, one bf16 rounding is left for XLA fusing the float32 expression
    # before the final cast on another CPU.
    _close(got, want, rtol=2**-7, atol=1e-6)
    if train:
        _close(new_state, updated, rtol=1e-5, atol=1e-5)


def test_half_output_dtype_keeps_float32_statistics(norms, norm_vars):
    x = _x(4, 5, 3, 6)
    want, updated = LinenNorms(dtype=jnp.float16).apply(norm_vars, x, mutable=["batch_stats"])
    got, new_state = norms.train_half_out.apply(norm_vars["params"],
                                                {"batch_stats": norm_vars["batch_stats"]}, x)
    assert _dtypes(got) == {"float16"} and _dtypes(new_state) == {"float32"}
    _close(got, want, rtol=2**-10, atol=1e-6)  # measured 0.0; one float16 rounding left
    _close(new_state, updated)


def test_rank2_batch_norm_and_group_norm(norms):
    x = _x(8, 4)
    variables = _random_like(jax.eval_shape(lambda: LinenFlat().init(jax.random.key(0), x)), 4)
    want, updated = LinenFlat().apply(variables, x, mutable=["batch_stats"])
    got, new_state = norms.flat.apply(variables["params"],
                                      {"batch_stats": variables["batch_stats"]}, x)
    _close(got, want)
    _close(new_state, updated)


def test_shared_batch_norm_updates_statistics_twice():
    m = build("""
    class Twice(nn.Module):
        def apply(self, x):
            bn = nn.BatchNorm.shared(momentum=0.5, name="bn")
            return bn(bn(x) * 2.0)

    aot.target("t", Twice, x=aot.f32[6, 3])
    """)

    class LinenTwice(ln.Module):
        @ln.compact
        def __call__(self, x):
            bn = ln.BatchNorm(use_running_average=False, momentum=0.5, name="bn")
            return bn(bn(x) * 2.0)

    x = _x(6, 3)
    variables = _random_like(jax.eval_shape(lambda: LinenTwice().init(jax.random.key(0), x)), 5)
    want, updated = LinenTwice().apply(variables, x, mutable=["batch_stats"])
    got, new_state = m.t.apply(variables["params"], {"batch_stats": variables["batch_stats"]}, x)
    _close(got, want)
    _close(new_state, updated)


def test_state_threads_through_nested_modules():
    """A module with state takes its subtree and returns the new one, at Linen's paths."""
    m = build("""
    class Block(nn.Module):
        def apply(self, x, train: bool):
            return nn.relu(nn.BatchNorm(nn.Dense(x, 4), use_running_average=not train))

    class Net(nn.Module):
        def apply(self, x, train: bool = True):
            x = Block(x, train=train)
            x = Block(x, train=train, name="second")
            return nn.Dense(x, 2)

    aot.target("t", Net, x=aot.f32[3, 5])
    """)
    text = m.__aotflax_text__
    assert "def block(params, batch_stats, x):" in text
    assert 'batch_stats["Block_0"]' in text and 'batch_stats["second"]' in text
    params, state = m.t.init(jax.random.key(0))
    assert set(state["batch_stats"]) == {"Block_0", "second"}
    _, new_state = m.t.apply(params, state, _x(3, 5))
    assert not np.allclose(new_state["batch_stats"]["second"]["BatchNorm_0"]["mean"], 0.0)


def test_state_a_call_leaves_unchanged_is_returned_as_given():
    """Eval-mode statistics come back as they were given: a block that changes none
    returns its subtree, its caller writes `x, _ = block(...)`, and a caller in which
    nothing changed returns its own argument; beside a child that updates, the unchanged
    subtrees are the ones given (not rebuilt leaf by leaf). Outputs and new statistics
    equal Linen's `apply(..., mutable=["batch_stats"])`."""
    m = build("""
    class Block(nn.Module):
        def apply(self, x, train: bool):
            return nn.relu(nn.BatchNorm(nn.Dense(x, 4), use_running_average=not train))

    class Net(nn.Module):
        def apply(self, x, tune: bool):
            x = Block(x, train=False)
            x = nn.BatchNorm(x, use_running_average=True, name="top")
            return Block(x, train=tune, name="tuned")

    aot.target("mixed", Net.partial(tune=True), x=aot.f32[3, 5])
    aot.target("frozen", Net.partial(tune=False), x=aot.f32[3, 5])
    """)
    text = m.__aotflax_text__
    assert 'x, _ = block(params["Block_0"], batch_stats["Block_0"], x)' in text
    assert ('{"Block_0": batch_stats["Block_0"], "top": batch_stats["top"], '
            '"tuned": tuned_batch_stats}') in text
    assert "return block_out, batch_stats\n" in text  # the frozen target: nothing changed

    class LBlock(ln.Module):
        train: bool

        @ln.compact
        def __call__(self, x):
            return ln.relu(ln.BatchNorm(use_running_average=not self.train)(ln.Dense(4)(x)))

    class LNet(ln.Module):
        tune: bool

        @ln.compact
        def __call__(self, x):
            x = LBlock(False, name="Block_0")(x)
            x = ln.BatchNorm(use_running_average=True, name="top")(x)
            return LBlock(self.tune, name="tuned")(x)

    x = _x(3, 5)
    for name, tune in (("mixed", True), ("frozen", False)):
        target = getattr(m, name)
        params, state = target.init(jax.random.key(1))
        state = perturbed(state, seed=2, scale=0.5)
        state = jax.tree.map(jnp.abs, state)  # variances stay positive
        y, new_state = target.apply(params, state, x)
        want, want_state = LNet(tune).apply({"params": params, **state}, x,
                                            mutable=["batch_stats"])
        np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
                     new_state, dict(want_state))
        changed = not np.allclose(new_state["batch_stats"]["tuned"]["BatchNorm_0"]["mean"],
                                  state["batch_stats"]["tuned"]["BatchNorm_0"]["mean"])
        assert changed == tune


# ================================================================ dropout and make_rng

DROPOUT = """
class Drop(nn.Module):
    def apply(self, x, rate: float = 0.3, train: bool = True):
        return nn.dropout(x, rate, deterministic=not train)

class Two(nn.Module):
    def apply(self, x):
        a = nn.dropout(x, 0.5)
        b = nn.dropout(x, 0.5, broadcast_dims=(0,))
        return a, b

class Nested(nn.Module):
    def apply(self, x):
        return Drop(x, 0.5), Drop(x, 0.5, name="other")

aot.target("drop", Drop, x=aot.f32[64, 128])
aot.target("det", Drop.partial(train=False), x=aot.f32[64, 128])
aot.target("rate0", Drop.partial(rate=0.0), x=aot.f32[64, 128])
aot.target("rate1", Drop.partial(rate=1.0), x=aot.f32[4, 8])
aot.target("two", Two, x=aot.f32[16, 32])
aot.target("nested", Nested, x=aot.f32[16, 32])
"""


@pytest.fixture(scope="module")
def drop():
    return build(DROPOUT)


def test_dropout_needs_rng_and_is_deterministic_per_rng(drop):
    x = jnp.ones((64, 128))
    assert drop.drop.stochastic
    with pytest.raises(TypeError, match="drop is stochastic.*pass rng=jax.random.key"):
        drop.drop.apply({}, {}, x)
    y1, _ = drop.drop.apply({}, {}, x, rng=jax.random.key(1))
    y2, _ = drop.drop.apply({}, {}, x, rng=jax.random.key(1))
    y3, _ = drop.drop.apply({}, {}, x, rng=jax.random.key(2))
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(y1 == 0, y3 == 0)
    # a raw uint32 key means the same as the typed key it wraps
    y4, _ = drop.drop.apply({}, {}, x, rng=jax.random.key_data(jax.random.key(1)))
    np.testing.assert_array_equal(y1, y4)


def test_dropout_keep_rate_and_scale(drop):
    x = jnp.ones((64, 128))
    y, _ = drop.drop.apply({}, {}, x, rng=jax.random.key(0))
    kept = np.asarray(y) != 0
    # 8192 Bernoulli(0.7) draws: the kept fraction is within 5 standard deviations
    assert abs(kept.mean() - 0.7) < 5 * np.sqrt(0.7 * 0.3 / kept.size)
    np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.7, rtol=1e-6)


def test_dropout_equals_linen_given_the_same_key(drop):
    """Our key for `Dropout_0` is fold_in(rng, hash(path)); Linen's Dropout takes it as rng=."""
    x = _x(64, 128)
    rng = jax.random.key(3)
    y, _ = drop.drop.apply({}, {}, x, rng=rng)
    key = jax.random.fold_in(rng, scope_hash("Dropout_0"))
    want = ln.Dropout(0.3).apply({}, x, deterministic=False, rng=key)
    np.testing.assert_array_equal(y, want)
    (a, b), _ = drop.two.apply({}, {}, x[:16, :32], rng=rng)
    want_b = ln.Dropout(0.5, broadcast_dims=(0,)).apply(
        {}, x[:16, :32], deterministic=False, rng=jax.random.fold_in(rng, scope_hash("Dropout_1")))
    np.testing.assert_array_equal(b, want_b)
    # broadcast over axis 0: every row has the same mask
    assert (np.asarray(b == 0) == np.asarray(b[:1] == 0)).all()
    assert not np.array_equal(a == 0, b == 0)


def test_deterministic_dropout_needs_no_rng(drop):
    x = _x(64, 128)
    for target in (drop.det, drop.rate0):
        assert not target.stochastic
        y, _ = target.apply({}, {}, x)
        np.testing.assert_array_equal(y, x)
        entry = re.search(r"= (\w+)\(", inspect.getsource(target.apply_fn)).group(1)
        assert "random" not in inspect.getsource(getattr(drop, entry))
    y, _ = drop.rate1.apply({}, {}, jnp.ones((4, 8)), rng=jax.random.key(0))
    np.testing.assert_array_equal(y, 0.0)


def test_keys_follow_the_module_path(drop):
    x = jnp.ones((16, 32))
    (a, b), _ = drop.nested.apply({}, {}, x, rng=jax.random.key(0))
    assert not np.array_equal(a == 0, b == 0)
    # Drop_0's key is fold_in(fold_in(rng, hash("Drop_0")), hash("Dropout_0")), whatever the order
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(0), scope_hash("Drop_0")),
                             scope_hash("Dropout_0"))
    np.testing.assert_array_equal(
        a, ln.Dropout(0.5).apply({}, x, deterministic=False, rng=key))


def test_make_rng_and_jax_random():
    m = build("""
    class Noisy(nn.Module):
        def apply(self, x):
            k1 = nn.make_rng()
            k2 = nn.make_rng()
            noise = jax.random.normal(k1, x.shape)
            u = jax.random.uniform(k2, (x.shape[0],), jnp.float32, 2.0, 3.0)
            mask = jax.random.bernoulli(nn.make_rng(), 0.5, x.shape)
            y = nn.dropout(x, 0.5, rng=nn.make_rng())
            return x + noise, u, mask, y

    aot.target("t", Noisy, x=aot.f32[4, 8])
    """)
    x = jnp.zeros((4, 8))
    (y, u, mask, d), _ = m.t.apply({}, {}, x, rng=jax.random.key(0))
    want = jax.random.normal(jax.random.fold_in(jax.random.key(0), scope_hash("make_rng_0")),
                             (4, 8))
    np.testing.assert_array_equal(y, want)
    assert ((u >= 2.0) & (u < 3.0)).all() and mask.dtype == jnp.bool_ and d.shape == (4, 8)
    (y2, u2, *_), _ = m.t.apply({}, {}, x, rng=jax.random.key(0))
    np.testing.assert_array_equal(u, u2)


# ================================================================ user state


def test_user_state_counter_and_moving_average():
    m = build("""
    class Tracker(nn.Module):
        def apply(self, x, decay: float = 0.9):
            count = self.state("count", (), nn.initializers.zeros, dtype=jnp.int32)
            ema = self.state("ema", (x.shape[-1],), collection="stats")
            count.value = count.value + 1
            ema.value = decay * ema.value + (1 - decay) * jnp.mean(x, axis=0)
            return x * 2.0, count.value

    class Outer(nn.Module):
        def apply(self, x):
            y, n = Tracker(x)
            steps = self.state("steps", (), collection=None)  # flax.nn's default collection
            return y, n, steps.value

    aot.target("t", Outer, x=aot.f32[3, 4])
    """)
    params, state = m.t.init(jax.random.key(0))
    assert params == {}
    assert m.t.STATE_SHAPES["state"]["Tracker_0"]["count"].dtype == jnp.int32
    assert state["stats"]["Tracker_0"]["ema"].shape == (4,)
    x = _x(3, 4)
    ema = np.zeros(4, np.float32)
    for step in range(1, 4):
        (y, n, steps), state = m.t.apply(params, state, x)
        ema = 0.9 * ema + np.float32(1 - 0.9) * np.asarray(x).mean(0)
        assert int(n) == step and int(state["state"]["Tracker_0"]["count"]) == step
        np.testing.assert_allclose(state["stats"]["Tracker_0"]["ema"], ema, rtol=1e-6)
        assert float(steps) == 0.0 and float(state["state"]["steps"]) == 0.0  # read-only


def test_state_and_key_errors_are_located():
    errors = build_errors("""
    class Bad(nn.Module):
        def apply(self, x):
            count = self.state("count", (), dtype=jnp.int32)
            count.value = x.sum()
            return x

    aot.target("t", Bad, x=aot.f32[3])
    """)
    assert "error[AOT313]" in errors and "is i32[] but is assigned f32[]" in errors
    errors = build_errors("""
    class Bad(nn.Module):
        def apply(self, x):
            return x + nn.make_rng()

    aot.target("t", Bad, x=aot.f32[3])
    """)
    assert "error[AOT206]" in errors and "does not take a random key" in errors
    errors = build_errors("""
    class Bad(nn.Module):
        def apply(self, x):
            s = self.state("s", (), collection="params")
            return x

    aot.target("t", Bad, x=aot.f32[3])
    """)
    assert "error[AOT356]" in errors
