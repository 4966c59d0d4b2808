"""jax.lax control flow beyond scan: `fori_loop` with static bounds and `lax.map`.

jax lowers both to scans; the emitted code is that scan (over `jnp.arange` for a
fori_loop, carrying nothing for map). Values are checked against the same calls run
by jax, inside a Linen twin where the model has parameters.
"""

from __future__ import annotations

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build, build_errors, perturbed


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.asarray(jax.random.normal(jax.random.key(seed), shape), np.float32)


def test_fori_loop_with_static_bounds_equals_jax_and_linen() -> None:
    m = build("""
        class Net(nn.Module):
            def apply(self, x, steps: int = 4):
                h = nn.Dense(x, 6)

                def body(i, val):
                    h, total = val
                    h = jnp.tanh(h * 0.9 + i)
                    return h, total + jnp.sum(h, axis=-1)

                h, total = jax.lax.fori_loop(1, steps, body, (h, jnp.zeros(x.shape[:1])))
                return nn.Dense(h, 2) + total[:, None]

        aot.target("net", Net, x=aot.f32[3, 5])
        """)

    class Twin(linen.Module):
        @linen.compact
        def __call__(self, x, steps=4):
            h = linen.Dense(6)(x)

            def body(i, val):
                h, total = val
                h = jnp.tanh(h * 0.9 + i)
                return h, total + jnp.sum(h, axis=-1)

            h, total = jax.lax.fori_loop(1, steps, body, (h, jnp.zeros(x.shape[:1])))
            return linen.Dense(2)(h) + total[:, None]

    x = _x(3, 5)
    variables = perturbed(Twin().init(jax.random.key(0), x), seed=1)
    params, state = m.net.init(jax.random.key(0))
    assert jax.tree_util.tree_structure(params) == \
        jax.tree_util.tree_structure(variables["params"])
    y, _ = m.net.apply(variables["params"], state, x)
    np.testing.assert_allclose(y, Twin().apply(variables, x), rtol=1e-5, atol=1e-6)
    # jax's own lowering: a scan over the indices, with the body's parameters named as given
    assert "jnp.arange(1, 4, dtype=jnp.int32)" in m.__aotflax_text__
    assert "def body(val, i):" in m.__aotflax_text__
    assert '"""Loop body `body`' in m.__aotflax_text__


def test_fori_loop_lambda_and_empty_range() -> None:
    m = build("""
        class Net(nn.Module):
            def apply(self, x):
                y = jax.lax.fori_loop(0, 3, lambda i, v: v * 2.0 - i, x)
                z = jax.lax.fori_loop(5, 5, lambda i, v: v + 100.0, x)  # no step runs
                return y + z

        aot.target("net", Net, x=aot.f32[2, 3])
        """)
    x = _x(2, 3)
    want = jax.lax.fori_loop(0, 3, lambda i, v: v * 2.0 - i, jnp.asarray(x)) + x
    np.testing.assert_allclose(m.net.apply({}, {}, x)[0], want, rtol=1e-6)


def test_lax_map_equals_jax() -> None:
    m = build("""
        def gram(row):
            return row @ row.T

        class Net(nn.Module):
            def apply(self, x):
                g = jax.lax.map(gram, x)
                return jax.lax.map(lambda m: jnp.sum(m), g)

        aot.target("net", Net, x=aot.f32[4, 3, 2])
        """)
    x = _x(4, 3, 2)
    want = jax.lax.map(jnp.sum, jax.lax.map(lambda r: r @ r.T, jnp.asarray(x)))
    np.testing.assert_allclose(m.net.apply({}, {}, x)[0], want, rtol=1e-5)
    assert '"""Mapped function `gram`' in m.__aotflax_text__


@pytest.mark.parametrize("call, message", [
    ("jax.lax.fori_loop(0, x.shape[0], lambda i, v: v, x)", None),  # shapes are static
    ("jax.lax.fori_loop(0, jnp.sum(x).astype(jnp.int32), lambda i, v: v, x)",
     "jax.lax.fori_loop needs static integer bounds"),
    ("jax.lax.fori_loop(0, 2, lambda v: v, x)",
     "jax.lax.fori_loop needs a function body_fun(i, val) -> val"),
    ("jax.lax.fori_loop(0, 2, lambda i, v: v.sum(), x)",
     "the fori_loop body must return a carry of the same types as init: got f32[] "
     "for f32[2, 3]"),
    ("jax.lax.map(lambda a, b: a, x)", "missing"),
    ("jax.lax.map(nn.relu, x)", None),  # any function of one array
    ("jax.lax.map(3, x)", "int 3 is not callable"),
    ("jax.lax.map(lambda r: r, 3.0)", "jax.lax.map: xs must be an array or a tuple of arrays"),
])
def test_control_flow_errors_are_located(call: str, message: str | None) -> None:
    source = f"""
        class Net(nn.Module):
            def apply(self, x):
                return {call}

        aot.target("net", Net, x=aot.f32[2, 3])
        """
    if message is None:
        build(source)
        return
    errors = build_errors(source)
    assert message in errors, errors
    assert "error[" in errors.splitlines()[0] and "Traceback" not in errors


def test_cond_on_a_static_predicate_is_the_branch_it_picks() -> None:
    m = build("""
        class Net(nn.Module):
            def apply(self, x, train: bool = False):
                y = jax.lax.cond(train, lambda v: v * 2.0, lambda v: v - 1.0, x)
                # jax's first form: cond(pred, true_operand, true_fun, false_operand, false_fun)
                z = jax.lax.cond(x.shape[0] > 1, x, jnp.tanh, y, jnp.sin)
                return y + z

        aot.target("infer", Net, x=aot.f32[2, 3])
        aot.target("train", Net.partial(train=True), x=aot.f32[1, 3])
        """)
    x = _x(2, 3)
    np.testing.assert_allclose(m.infer.apply({}, {}, x)[0], (x - 1.0) + np.tanh(x), rtol=1e-6)
    x1 = x[:1]
    np.testing.assert_allclose(m.train.apply({}, {}, x1)[0], 2 * x1 + np.sin(2 * x1),
                               rtol=1e-6)


def test_cond_on_an_array_predicate_says_so() -> None:
    errors = build_errors("""
        class Net(nn.Module):
            def apply(self, x):
                return jax.lax.cond(jnp.sum(x) > 0, lambda v: v, lambda v: -v, x)

        aot.target("net", Net, x=aot.f32[2, 3])
        """)
    assert "error[AOT361]: jax.lax.cond on an array predicate is not supported yet" in errors
    assert "hint: compute both branches and pick with jnp.where(pred, a, b)" in errors


def test_tree_map_and_leaves_walk_static_structures() -> None:
    m = build("""
        class Net(nn.Module):
            def apply(self, x):
                tree = {"b": (x, x * 2.0), "a": [x + 1.0, None]}
                doubled = jax.tree_util.tree_map(lambda v: v * 2.0, tree)
                summed = jax.tree_multimap(lambda u, v: u + v, tree, doubled)
                total = sum(jnp.sum(v) for v in jax.tree_leaves(summed))
                return jax.tree.map(jnp.tanh, summed)["b"][1], total

        aot.target("net", Net, x=aot.f32[2, 3])
        """)
    x = _x(2, 3)
    tree = {"b": (x, x * 2.0), "a": [x + 1.0, None]}
    summed = jax.tree_util.tree_map(lambda u: 3.0 * u, tree)
    (y, total), _ = m.net.apply({}, {}, x)
    np.testing.assert_allclose(y, np.tanh(summed["b"][1]), rtol=1e-6)
    np.testing.assert_allclose(total, sum(np.sum(v) for v in jax.tree_util.tree_leaves(summed)),
                               rtol=1e-5)


def test_tree_map_over_different_structures_is_a_located_error() -> None:
    errors = build_errors("""
        class Net(nn.Module):
            def apply(self, x):
                return jax.tree_util.tree_map(lambda u, v: u + v, {"a": x}, {"b": x})

        aot.target("net", Net, x=aot.f32[2, 3])
        """)
    assert "error[AOT203]: jax.tree_util.tree_map: the trees differ at the root" in errors


def test_nn_stochastic_blocks_draw_old_flax_nn_keys() -> None:
    """flax.nn's `_PRNGFrame`: inside `with nn.stochastic(key):` the n-th draw is
    `fold_in(key, n)` (LRA's Reformer hashes with such a fixed key, inside a vmap)."""
    m = build("""
        def hash_vectors(vecs, n_buckets):
            with nn.stochastic(jax.random.PRNGKey(0)):
                first = nn.make_rng()
                second = nn.make_rng()
            r = vecs @ jax.random.normal(first, (vecs.shape[-1], n_buckets // 2))
            r = r + vecs @ jax.random.normal(second, (vecs.shape[-1], n_buckets // 2))
            return jnp.argmax(jnp.concatenate([r, -r], axis=-1), axis=-1)

        class Net(nn.Module):
            def apply(self, x):
                buckets = jax.vmap(hash_vectors, in_axes=(0, None))(x, 4)
                with nn.stochastic(jax.random.key(3)):
                    y = nn.dropout(x, 0.5)
                return buckets, y

        aot.target("net", Net, x=aot.f32[2, 5, 3])
        """)
    x = _x(2, 5, 3)

    def hash_vectors(vecs, n_buckets):
        base = jax.random.PRNGKey(0)
        first, second = jax.random.fold_in(base, 1), jax.random.fold_in(base, 2)
        r = vecs @ jax.random.normal(first, (vecs.shape[-1], n_buckets // 2))
        r = r + vecs @ jax.random.normal(second, (vecs.shape[-1], n_buckets // 2))
        return jnp.argmax(jnp.concatenate([r, -r], axis=-1), axis=-1)

    keep = jax.random.bernoulli(jax.random.fold_in(jax.random.key(3), 1), 0.5, x.shape)
    (buckets, y), _ = m.net.apply({}, {}, x)  # no rng: the target draws nothing of its own
    np.testing.assert_array_equal(buckets, jax.vmap(hash_vectors, in_axes=(0, None))(x, 4))
    np.testing.assert_array_equal(y, np.where(keep, x / 0.5, 0.0))
    assert not m.__aotflax_program__.targets[0].stochastic  # it needs no rng= of its own


@pytest.mark.parametrize("body, message", [
    ("with nn.stochastic(3):\n                    y = x",
     "error[AOT202]: nn.stochastic takes one random key"),
    ('with open("log.txt"):\n                    y = x', "error[AOT105]: 'open' is not available"),
    ("with nn.stochastic(jax.random.PRNGKey(0)):\n                    y = Inner(x)",
     "error[AOT346]: module Inner is called inside `with nn.stochastic(...)`"),
    ("with nn.stochastic(jax.random.PRNGKey(0)) as s:\n                    y = x",
     "error[AOT102]: 'with' is supported only as `with nn.stochastic(rng):` inside a function"),
])
def test_with_blocks_other_than_nn_stochastic_are_located(body: str, message: str) -> None:
    errors = build_errors(f"""
        class Inner(nn.Module):
            def apply(self, x):
                return x

        class Net(nn.Module):
            def apply(self, x):
                {body}
                return y

        aot.target("net", Net, x=aot.f32[2, 3])
        """)
    assert message in errors, errors
