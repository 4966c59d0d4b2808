"""Train steps against optax, step by step: parameters and every optimizer-state leaf.

Each generated train step runs three consecutive steps next to a reference written
with Flax Linen (or the generated forward) and optax directly; after every step
the parameters and each leaf of the optimizer state must agree. A step that drops
its updated optimizer state (momentum, Adam's moments, the step count) fails here.
Also: `after_update=` hooks, `microbatches=` and the donation of a loaded step.
"""

import importlib
import json
from pathlib import Path

import flax.linen as ln
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import build, build_errors, write_model

from aotflax.driver import main
from aotflax.verify import load_package

MODELS = Path(__file__).resolve().parent.parent / "models"

SOURCE = """
import optax

class MLP(nn.Module):
    def apply(self, x):
        x = nn.relu(nn.Dense(x, 8))
        return nn.Dense(x, 3)

def cross_entropy(logits, labels):
    logp = nn.log_softmax(logits)
    return -jnp.mean(jnp.sum(nn.one_hot(labels, 3) * logp, axis=-1))

KERNELS = aot.ModelParamTraversal(lambda path, p: path.endswith("/kernel"))
BIASES = aot.ModelParamTraversal(lambda path, p: path.endswith("/bias"))

def orthogonalize(params):
    return KERNELS.update(lambda k: jnp.linalg.qr(k)[0], params)

aot.train_target("sgd", MLP, loss=cross_entropy, optimizer=optax.sgd(0.1, momentum=0.9),
                 x=aot.f32[8, 16], labels=aot.i32[8])
aot.train_target("adam", MLP, loss=cross_entropy, optimizer=optax.adam(0.01),
                 x=aot.f32[8, 16], labels=aot.i32[8])
aot.train_target("groups", MLP, loss=cross_entropy,
                 optimizer=aot.MultiOptimizer((KERNELS, optax.sgd(0.1, momentum=0.9)),
                                              (BIASES, optax.adam(0.01))),
                 x=aot.f32[8, 16], labels=aot.i32[8])
aot.train_target("ortho", MLP, loss=cross_entropy, optimizer=optax.sgd(0.1, momentum=0.9),
                 after_update=orthogonalize, x=aot.f32[8, 16], labels=aot.i32[8])
aot.train_target("micro", MLP, loss=cross_entropy, optimizer=optax.adam(0.01),
                 microbatches=4, x=aot.f32[8, 16], labels=aot.i32[8])
"""

#: The reference optimizers, by target (groups: the labels the traversals give).
OPTIMIZERS = {
    "sgd": lambda: optax.sgd(0.1, momentum=0.9),
    "adam": lambda: optax.adam(0.01),
    "groups": lambda: optax.multi_transform(
        {"group_0": optax.sgd(0.1, momentum=0.9), "group_1": optax.adam(0.01),
         "frozen": optax.set_to_zero()},
        lambda params: jax.tree_util.tree_map_with_path(
            lambda path, _: "group_0" if path[-1].key == "kernel" else "group_1", params)),
}


class LinenMLP(ln.Module):
    @ln.compact
    def __call__(self, x):
        x = ln.relu(ln.Dense(8)(x))
        return ln.Dense(3)(x)


def linen_loss(params, x, labels):
    logp = jax.nn.log_softmax(LinenMLP().apply({"params": params}, x))
    return -jnp.mean(jnp.sum(jax.nn.one_hot(labels, 3) * logp, axis=-1))


@pytest.fixture(scope="module")
def m():
    return build(SOURCE)


def _batches(n=3):
    rng = np.random.RandomState(0)
    return [(rng.randn(8, 16).astype(np.float32), rng.randint(0, 3, 8).astype(np.int32))
            for _ in range(n)]


def _params(target, seed=0):
    """Initial parameters with non-zero biases, so no term can hide behind a zero."""
    params, state = target.init(jax.random.key(seed))
    keys = iter(jax.random.split(jax.random.key(seed + 1), len(jax.tree.leaves(params))))
    return jax.tree.map(lambda a: a + 0.1 * jax.random.normal(next(keys), a.shape), params), state


def _reference_steps(optimizer, params, batches, after=None):
    """Linen + optax: the parameters and optimizer state after each step."""
    opt_state = optimizer.init(params)
    out = []
    for x, labels in batches:
        grads = jax.grad(linen_loss)(params, x, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if after is not None:
            params = after(params)
        out.append((params, opt_state))
    return out


def _assert_same(got, want, rtol=1e-5, atol=1e-6):
    """Same tree structure and every leaf close (parameters and optimizer state)."""
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol,
                                   err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_three_train_steps_equal_linen_and_optax(m, name):
    target = getattr(m, name)
    params, state = _params(target)
    want = _reference_steps(OPTIMIZERS[name](), params, _batches())
    opt_state = target.init_opt(params)
    for (x, labels), (want_params, want_opt) in zip(_batches(), want):
        params, state, opt_state, _ = target.train_step(params, state, opt_state, x, labels)
        _assert_same(params, want_params)
        _assert_same(opt_state, want_opt)


def test_loaded_train_step_equals_optax_for_three_steps_and_donates(tmp_path):
    model = write_model(SOURCE, name="optax_loaded")
    args = [str(model), "-o", str(tmp_path / "out"), "--target", "groups", "--target", "ortho"]
    assert main(args) == 0
    load_package(tmp_path / "out", "_optax_loaded_pkg")
    mod = importlib.import_module("_optax_loaded_pkg.optax_loaded")
    params, state = _params(mod.groups)
    want = _reference_steps(OPTIMIZERS["groups"](), params, _batches())
    step = mod.groups.load_train_step()
    assert step.kind == "executable"
    opt_state = mod.groups.init_opt(params)
    for (x, labels), (want_params, want_opt) in zip(_batches(), want):
        before = jax.tree.leaves((params, opt_state))
        params, state, opt_state, _ = step(params, state, opt_state, x, labels)
        # the caller's parameters and optimizer state were consumed (donated)
        assert all(leaf.is_deleted() for leaf in before)
        _assert_same(params, want_params)
        _assert_same(opt_state, want_opt)
    folder = tmp_path / "out" / "artifacts" / "optax_loaded" / "groups__train_step"
    manifest = json.loads((folder / "manifest.json").read_text())
    memory = manifest["executables"]["cpu"]["memory"]
    donated = sum(leaf.nbytes for leaf in jax.tree.leaves((params, opt_state)))
    assert memory["alias"] >= donated  # XLA writes the new values into the donated buffers
    _check_after_update(mod)


def _check_after_update(mod):
    """The `ortho` step of the build above: one loaded step, then the hook's effect."""
    params, state = _params(mod.ortho)
    x, labels = _batches(1)[0]
    plain = _reference_steps(OPTIMIZERS["sgd"](), params, [(x, labels)])[0][0]
    step = mod.ortho.load_train_step()
    assert step.kind == "executable"  # the hook is compiled into the same executable
    got, _, _, _ = step(params, state, mod.ortho.init_opt(params), x, labels)
    for layer in ("Dense_0", "Dense_1"):
        q = np.asarray(got[layer]["kernel"])
        np.testing.assert_allclose(q.T @ q, np.eye(q.shape[1]), atol=1e-5)  # orthonormal
        np.testing.assert_allclose(q, np.asarray(jnp.linalg.qr(plain[layer]["kernel"])[0]),
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got[layer]["bias"], plain[layer]["bias"], rtol=1e-6,
                                   atol=1e-7)  # not selected: the plain optax step


def test_after_update_hook_is_interpreted_into_a_function_of_the_generated_module(m):
    text = m.__aotflax_text__
    # the hook's argument is renamed: `params` is the parameter tree's name in generated code
    assert "def orthogonalize(params_1):" in text
    assert "params = orthogonalize(params)  # after_update=" in text
    assert text.count("jnp.linalg.qr(") == 2  # one per selected kernel, no bias
    # the source step too: orthonormal kernels, biases as a plain optax step
    params, state = _params(m.ortho)
    x, labels = _batches(1)[0]
    got, _, _, _ = m.ortho.train_step(params, state, m.ortho.init_opt(params), x, labels)
    plain = _reference_steps(OPTIMIZERS["sgd"](), params, [(x, labels)])[0][0]
    q = np.asarray(got["Dense_0"]["kernel"])
    np.testing.assert_allclose(q.T @ q, np.eye(8), atol=1e-5)
    np.testing.assert_allclose(got["Dense_1"]["bias"], plain["Dense_1"]["bias"], rtol=1e-6)


def test_a_hook_every_other_step_is_a_second_target_over_the_same_trees(m):
    """`sgd` and `ortho` share parameter and optimizer-state trees: a plain step, then one
    with the projection, equal optax with the QR applied after the second update only."""
    params, state = _params(m.sgd)
    opt = optax.sgd(0.1, momentum=0.9)
    want, want_opt = params, opt.init(params)
    opt_state = m.sgd.init_opt(params)
    for i, ((x, labels), target) in enumerate(zip(_batches(2), (m.sgd, m.ortho))):
        params, state, opt_state, _ = target.train_step(params, state, opt_state, x, labels)
        updates, want_opt = opt.update(jax.grad(linen_loss)(want, x, labels), want_opt, want)
        want = optax.apply_updates(want, updates)
        if i == 1:
            want = jax.tree_util.tree_map_with_path(
                lambda path, p: jnp.linalg.qr(p)[0] if path[-1].key == "kernel" else p, want)
    _assert_same(params, want, rtol=1e-4, atol=1e-5)
    _assert_same(opt_state, want_opt, rtol=1e-5, atol=1e-6)


def test_microbatches_accumulate_gradients_to_the_full_batch_step(m):
    params, state = _params(m.micro)
    want = _reference_steps(optax.adam(0.01), params, _batches())
    opt_state = m.micro.init_opt(params)
    for (x, labels), (want_params, want_opt) in zip(_batches(), want):
        params, state, opt_state, metrics = m.micro.train_step(params, state, opt_state, x,
                                                               labels)
        _assert_same(params, want_params, rtol=1e-4, atol=1e-6)
        _assert_same(opt_state, want_opt, rtol=1e-4, atol=1e-7)
    x, labels = _batches()[-1]
    assert "jax.lax.scan(microbatch" in m.__aotflax_text__
    np.testing.assert_allclose(metrics["loss"], linen_loss(want[1][0], x, labels), rtol=1e-5)


BATCHNORM = """
import optax

class Net(nn.Module):
    def apply(self, x, train: bool = True):
        x = nn.Dense(x, 4)
        return nn.BatchNorm(x, use_running_average=not train, momentum=0.9)

def squares(y):
    return jnp.mean(y ** 2)

aot.train_target("bn", Net, loss=squares, optimizer=optax.sgd(0.1), microbatches=2,
                 x=aot.f32[8, 3])
"""


def test_microbatches_thread_the_model_state_through_the_slices_in_order():
    m = build(BATCHNORM)
    params, state = _params(m.bn)
    x = np.random.RandomState(1).randn(8, 3).astype(np.float32)
    _, new_state, _, _ = m.bn.train_step(params, state, m.bn.init_opt(params), x)
    # each half updates the running statistics (the generated function takes any batch;
    # `apply` checks its inputs against the target's shapes)
    _, first = m.bn.apply_fn(params, state, x[:4])
    _, second = m.bn.apply_fn(params, first, x[4:])
    _assert_same(new_state, second, rtol=1e-6)


@pytest.fixture(scope="module")
def lm():
    return build((MODELS / "transformer.py").read_text(), header=False)


def test_lm_train_step_equals_optax_for_three_steps(lm):
    """The zoo's LM (dropout, AdamW and Adam groups) against optax on its own forward."""
    target = lm.lm_train
    params, state = target.init(jax.random.key(0))
    labels = jax.tree_util.tree_map(lambda p: "group_0" if p.ndim > 1 else "group_1", params)
    optimizer = optax.multi_transform(
        {"group_0": optax.adamw(3e-4, weight_decay=0.1), "group_1": optax.adam(3e-4),
         "frozen": optax.set_to_zero()}, labels)

    def loss(p, tokens, key):
        logits, _ = target.apply(p, {}, tokens, rng=key)
        logp = jax.nn.log_softmax(logits[:, :-1])
        return -jnp.mean(jnp.sum(jax.nn.one_hot(tokens[:, 1:], 128) * logp, axis=-1))

    @jax.jit
    def reference(p, opt, tokens, key):
        value, grads = jax.value_and_grad(loss)(p, tokens, key)
        updates, opt = optimizer.update(grads, opt, p)
        return optax.apply_updates(p, updates), opt, value

    tokens = np.random.RandomState(0).randint(0, 128, (3, 4, 32)).astype(np.int32)
    ref_params, ref_opt = params, optimizer.init(params)
    opt_state = target.init_opt(params)
    step = jax.jit(target.train_step)
    for i in range(3):
        key = jax.random.key(i)
        params, state, opt_state, metrics = step(params, state, opt_state, tokens[i], rng=key)
        ref_params, ref_opt, value = reference(ref_params, ref_opt, tokens[i], key)
        np.testing.assert_allclose(metrics["loss"], value, rtol=1e-5)
        _assert_same(params, ref_params, rtol=1e-6, atol=1e-8)
        _assert_same(opt_state, ref_opt, rtol=1e-6, atol=1e-10)


def test_after_update_must_return_the_parameter_tree():
    errors = build_errors("""
    import optax

    class M(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    def only_kernels(params):
        return {"Dense_0": {"kernel": params["Dense_0"]["kernel"]}}

    def loss(y):
        return jnp.mean(y ** 2)

    aot.train_target("t", M, loss=loss, optimizer=optax.sgd(0.1), after_update=only_kernels,
                     x=aot.f32[4, 5])
    """)
    assert "error[AOT426]" in errors and "/Dense_0/bias is missing" in errors


def test_traversal_update_must_keep_each_parameters_shape():
    errors = build_errors("""
    import optax

    class M(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 8)

    KERNELS = aot.ModelParamTraversal(lambda path, p: path.endswith("kernel"))

    def orthogonalize(params):
        return KERNELS.update(lambda k: jnp.linalg.qr(k)[0], params)

    def loss(y):
        return jnp.mean(y ** 2)

    aot.train_target("t", M, loss=loss, optimizer=optax.sgd(0.1), after_update=orthogonalize,
                     x=aot.f32[4, 5])
    """)
    assert "error[AOT421]" in errors and "f32[5, 8] for /Dense_0/kernel, got array f32[5, 5]" \
        in errors


def test_microbatches_must_divide_every_input():
    errors = build_errors("""
    import optax

    class M(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    def loss(y):
        return jnp.mean(y ** 2)

    aot.train_target("t", M, loss=loss, optimizer=optax.sgd(0.1), microbatches=3,
                     x=aot.f32[4, 5])
    """)
    assert "error[AOT427]" in errors and "input 'x' has first dimension 4" in errors


def test_training_keywords_on_a_forward_target_are_located():
    errors = build_errors("""
    class M(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    aot.target("t", M, microbatches=2, x=aot.f32[4, 5])
    """)
    assert "error[AOT427]" in errors and "belongs to aot.train_target" in errors


CNN_STEPS = """

import optax


def cross_entropy(logp, labels):
    return -jnp.mean(jnp.sum(nn.one_hot(labels, 10) * logp, axis=-1))


SMALL = CNN.partial(widths=(8, 16), hidden=32)
aot.train_target("whole", SMALL, loss=cross_entropy, optimizer=optax.adam(0.01),
                 x=aot.f32[8, 16, 16, 1], labels=aot.i32[8])
aot.train_target("sliced", SMALL, loss=cross_entropy, optimizer=optax.adam(0.01),
                 microbatches=2, x=aot.f32[8, 16, 16, 1], labels=aot.i32[8])
"""


def test_microbatches_resolve_the_model_for_one_slice():
    """The zoo's CNN reshapes with its batch size: each slice runs a model resolved for
    4 rows, and the step equals the whole-batch one."""
    m = build((MODELS / "cnn.py").read_text() + CNN_STEPS, header=False)
    # one shape-generic function serves the whole batch and each 4-row slice
    assert "x = jnp.reshape(x, (batch, " in m.__aotflax_text__
    params, state = _params(m.whole)
    x = np.random.RandomState(2).randn(8, 16, 16, 1).astype(np.float32)
    labels = np.arange(8, dtype=np.int32) % 10
    want = m.whole.train_step(params, state, m.whole.init_opt(params), x, labels)
    got = m.sliced.train_step(params, state, m.sliced.init_opt(params), x, labels)
    _assert_same(got[0], want[0], rtol=1e-4, atol=1e-6)
    _assert_same(got[2], want[2], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got[3]["loss"], want[3]["loss"], rtol=1e-6)


def test_names_of_the_model_file_like_the_microbatch_steps_locals_are_renamed():
    """A hook named `updates`, a loss named `microbatch` and inputs named `inputs`, `key`
    and `carry` (the step's own locals) get other names; the step equals optax's."""
    m = build("""
    import optax

    class M(nn.Module):
        def apply(self, inputs, key):
            return nn.Dense(inputs, 3) + key

    def updates(params):
        return params

    def microbatch(y, carry):
        return jnp.mean((y - carry) ** 2)

    aot.train_target("t", M, loss=microbatch, optimizer=optax.sgd(0.1), after_update=updates,
                     microbatches=2, inputs=aot.f32[4, 5], key=aot.f32[4, 3],
                     carry=aot.f32[4, 3])
    """)
    assert "params = updates_fn(params)  # after_update=" in m.__aotflax_text__
    params, state = _params(m.t)
    rng = np.random.RandomState(3)
    x, k, c = (rng.randn(4, n).astype(np.float32) for n in (5, 3, 3))
    got, _, _, _ = m.t.train_step(params, state, m.t.init_opt(params), x, k, c)

    def loss(p):
        return jnp.mean((m.t.apply(p, {}, x, k)[0] - c) ** 2)

    want = jax.tree.map(lambda p, g: p - 0.1 * g, params, jax.grad(loss)(params))
    _assert_same(got, want, rtol=1e-5, atol=1e-6)


def test_an_input_named_inputs_keeps_its_name_except_beside_the_microbatch_scan():
    """`inputs` is flax.nn's usual input name: the generated entry takes it as `inputs`; only
    the microbatch step, whose scan body binds `inputs`, renames it, and computes what the
    whole-batch step computes."""
    m = build("""
    import optax

    class Net(nn.Module):
        def apply(self, inputs):
            return nn.Dense(inputs, 3)

    def squares(y):
        return jnp.mean(y ** 2)

    aot.target("net", Net, inputs=aot.f32[4, 2])
    aot.train_target("whole", Net, loss=squares, optimizer=optax.sgd(0.1), inputs=aot.f32[4, 2])
    aot.train_target("halves", Net, loss=squares, optimizer=optax.sgd(0.1), microbatches=2,
                     inputs=aot.f32[4, 2])
    """)
    text = m.__aotflax_text__
    assert "def _net_apply(params, state, inputs, rng=None):" in text
    assert "def _halves_train_step(params, state, opt_state, inputs_1, " in text
    params, state = _params(m.whole)
    x = np.random.RandomState(0).randn(4, 2).astype(np.float32)
    whole = m.whole.train_step(params, state, m.whole.init_opt(params), x)
    halves = m.halves.train_step(params, state, m.halves.init_opt(params), x)
    _assert_same(halves[0], whole[0], rtol=1e-6)
