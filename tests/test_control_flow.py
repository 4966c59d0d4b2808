"""jax.lax control flow beyond scan: `fori_loop` with static bounds, `lax.map`, and
`cond`, `switch` and `while_loop`.

jax lowers the first two to scans; the emitted code is that scan (over `jnp.arange` for
a fori_loop, carrying nothing for map). cond, switch and while_loop on arrays are emitted
as written over nested defs. Values are checked against the same calls run by jax, inside
a Linen twin where the model has parameters.
"""

from __future__ import annotations

from pathlib import Path

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build, build_errors, perturbed

from aotflax.compile import compile_target


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
    ("jax.lax.fori_loop(0, jnp.sum(x), lambda i, v: v, x)",
     "jax.lax.fori_loop: bounds must be integer scalars, got f32[]"),
    ("jax.lax.fori_loop(0.5, 3, lambda i, v: v, x)",
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


def test_cond_switch_and_while_loop_on_arrays_equal_linen(tmp_path: Path) -> None:
    """On array values each branch, and a while loop's condition and body, is a nested
    def and the call is jax's own, so the values are jax's (here inside a Linen twin)."""
    m = build("""
        def newton_sqrt(a):
            def cond_fun(carry):
                i, x = carry
                return jnp.logical_and(i < 20, jnp.max(jnp.abs(x * x - a)) > 1e-6)

            def body_fun(carry):
                i, x = carry
                return i + 1, 0.5 * (x + a / x)

            steps, root = jax.lax.while_loop(cond_fun, body_fun, (0, jnp.ones_like(a)))
            return root, steps

        class Net(nn.Module):
            def apply(self, x, flag):
                y = nn.Dense(x, 4)
                z = jax.lax.cond(flag > 0, lambda v: jnp.tanh(v) * 2.0, lambda v: v - 1.0, y)
                w = jax.lax.switch(flag, [lambda v, u: v + u, lambda v, u: v * u,
                                          jnp.subtract], z, y)
                pair = jax.lax.cond(jnp.sum(w) > 0, lambda p: (p[1], p[0]), lambda p: p,
                                    (w, z))
                r, steps = newton_sqrt(jnp.abs(pair[0]) + 1.0)
                r = jax.lax.fori_loop(0, steps, lambda i, v: v * 0.9 + i, r)
                return nn.Dense(r, 3), steps

        aot.target("net", Net, x=aot.f32[2, 5], flag=aot.i32[()])
        """)

    def newton_sqrt(a):
        def cond_fun(carry):
            i, x = carry
            return jnp.logical_and(i < 20, jnp.max(jnp.abs(x * x - a)) > 1e-6)

        def body_fun(carry):
            i, x = carry
            return i + 1, 0.5 * (x + a / x)

        steps, root = jax.lax.while_loop(cond_fun, body_fun, (0, jnp.ones_like(a)))
        return root, steps

    class Twin(linen.Module):
        @linen.compact
        def __call__(self, x, flag):
            y = linen.Dense(4)(x)
            z = jax.lax.cond(flag > 0, lambda v: jnp.tanh(v) * 2.0, lambda v: v - 1.0, y)
            w = jax.lax.switch(flag, [lambda v, u: v + u, lambda v, u: v * u, jnp.subtract],
                               z, y)
            pair = jax.lax.cond(jnp.sum(w) > 0, lambda p: (p[1], p[0]), lambda p: p, (w, z))
            r, steps = newton_sqrt(jnp.abs(pair[0]) + 1.0)
            r = jax.lax.fori_loop(0, steps, lambda i, v: v * 0.9 + i, r)
            return linen.Dense(3)(r), steps

    x = _x(2, 5)
    variables = perturbed(Twin().init(jax.random.key(0), x, 0), seed=1)
    compile_target(m.net, tmp_path / "artifacts")
    run = m.net.load(artifact_dir=tmp_path / "artifacts")
    for flag in (-1, 0, 1, 2, 7):  # switch clamps its index, as jax does
        flag = np.int32(flag)
        (y, steps), _ = m.net.apply(variables["params"], {}, x, flag)
        want, want_steps = Twin().apply(variables, x, flag)
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
        assert int(steps) == int(want_steps) and 0 < int(steps) < 20
        (y_loaded, _), _ = run(variables["params"], {}, x, flag)  # the executable's loops
        np.testing.assert_allclose(y_loaded, want, rtol=1e-5, atol=1e-6)
    text = m.__aotflax_text__
    assert "jax.lax.cond(mask, true_fun, false_fun, y)" in text
    assert "jax.lax.while_loop(cond_fun, body_fun, (" in text
    assert "    def body_fun(carry):  # " in text
    assert "jax.lax.switch(flag, (branch, branch_1, branch_2), z, y)" in text
    assert "r = jax.lax.fori_loop(0, steps, body_fun, root)" in text
    assert '"""A branch of jax.lax.cond (a lambda), from ' in text


@pytest.mark.parametrize("call, message", [
    ("jax.lax.cond(jnp.sum(x) > 0, lambda v: v, lambda v: v.sum(), x)",
     "error[AOT364]: jax.lax.cond: every branch must return the same types: got f32[] for "
     "f32[2, 3]"),
    ("jax.lax.cond(x[0], lambda v: v, lambda v: -v, x)",
     "jax.lax.cond: the predicate must be a scalar (a boolean or an integer), got f32[3]"),
    ("jax.lax.cond(jnp.sum(x) > 0, lambda v: nn.Dense(v, 3), lambda v: v, x)",
     "may not use layers, randomness or state"),
    ("jax.lax.cond(jnp.sum(x) > 0, x, jnp.tanh, x, jnp.sin)",
     "on an array predicate is not supported"),
    ("jax.lax.cond(jnp.sum(x) > 0, lambda d: d['a'], lambda d: d['a'], {'a': x})",
     "jax.lax.cond: operands must be arrays, numbers or tuples of them, got dict of 1"),
    ("jax.lax.switch(jnp.sum(x) > 0, [jnp.sin, jnp.cos], x)",
     "jax.lax.switch: the index must be an integer array, got bool[]"),
    ("jax.lax.switch(1, [jnp.sin, jnp.cos], x)", None),  # a static index picks its branch
    ("jax.lax.while_loop(lambda c: jnp.sum(c), lambda c: c * 2.0, x)",
     "jax.lax.while_loop: cond_fun must return a boolean scalar, got f32[]"),
    ("jax.lax.while_loop(lambda c: jnp.sum(c) < 9.0, lambda c: c[0], x)",
     "jax.lax.while_loop: body_fun must return a carry of init_val's types: got f32[3] for "
     "f32[2, 3]"),
    ("jax.lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] * 2.0), (0, x))[1]",
     None),
])
def test_array_control_flow_errors_are_located(call: str, message: str | None) -> None:
    test_control_flow_errors_are_located(call, message)


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


def test_array_control_flow_in_a_bucketed_target_is_refused_where_it_reads_the_batch() -> None:
    """The padding proof does not follow a branch axis by axis: an array of the bucketed
    dimension going into one, as an operand or read from around it, is a located AOT413."""
    for call in ("jax.lax.cond(flag > 0, lambda v: v.sum(0) + v, jnp.tanh, y)",
                 "jax.lax.cond(flag > 0, lambda: y.mean(0) + y, lambda: y)"):
        errors = build_errors(f"""
            class Net(nn.Module):
                def apply(self, x, flag):
                    y = nn.Dense(x, 4)
                    return {call}

            aot.target("net", Net, x=aot.f32["batch", 3], flag=aot.i32[()],
                       buckets={{"batch": (1, 8)}})
            """)
        first = errors.splitlines()[0]
        assert "error[AOT413]" in first and "mixes positions along bucketed dimension " \
            "'batch': it goes through jax.lax.cond's functions" in first, errors


def test_a_while_loop_in_a_training_target_is_located() -> None:
    errors = build_errors("""
        import optax

        class Net(nn.Module):
            def apply(self, x):
                _, y = jax.lax.while_loop(lambda c: c[0] < 3,
                                          lambda c: (c[0] + 1, jnp.tanh(c[1])), (0, x))
                return nn.Dense(y, 2)

        def loss(y, labels):
            return jnp.mean((y - labels) ** 2)

        aot.train_target("step", Net, loss=loss, optimizer=optax.sgd(0.1), x=aot.f32[2, 3],
                         labels=aot.f32[2, 2])
        """)
    first = errors.splitlines()[0]
    assert "error[AOT361]: a training target's model has no gradient through " \
        "jax.lax.while_loop" in first and ":10:" in first, errors
    assert "hint: loop a static number of times with jax.lax.fori_loop" in errors


def test_a_cond_costs_its_costliest_branch_in_the_summary() -> None:
    from aotflax.summary import target_flops

    def flops(true_fun: str, false_fun: str) -> int:
        m = build(f"""
            class Net(nn.Module):
                def apply(self, x):
                    return jax.lax.cond(jnp.sum(x) > 0, {true_fun}, {false_fun}, x)

            aot.target("net", Net, x=aot.f32[8, 8])
            """)
        return target_flops(m.__aotflax_program__.targets[0])

    cheap, dear = "lambda v: v + 1.0", "lambda v: v @ v @ v"
    base = flops(cheap, cheap)
    assert flops(cheap, dear) == flops(dear, cheap) == flops(dear, dear) > base
