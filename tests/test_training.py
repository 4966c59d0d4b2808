"""Training targets: loss, optax optimizer, parameter groups; equal to Linen + optax."""

import flax.linen as ln
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import build, build_errors

SOURCE = """
import optax

class MLP(nn.Module):
    def apply(self, x):
        x = nn.relu(nn.Dense(x, 8))
        return nn.Dense(x, 3)

def cross_entropy(logits, labels):
    logp = nn.log_softmax(logits)
    loss = -jnp.mean(jnp.sum(nn.one_hot(labels, 3) * logp, axis=-1))
    accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
    return loss, {"accuracy": accuracy}

aot.train_target("train", MLP, loss=cross_entropy, optimizer=optax.adam(0.01),
                 x=aot.f32[4, 5], labels=aot.i32[4])
aot.train_target("train_groups", MLP, loss=cross_entropy,
                 optimizer=aot.MultiOptimizer(
                     (aot.ModelParamTraversal(lambda path, p: "bias" not in path),
                      optax.sgd(0.1)),
                 ),
                 x=aot.f32[4, 5], labels=aot.i32[4])
aot.train_target("train_momentum", MLP, loss=cross_entropy,
                 optimizer=optax.sgd(0.1, momentum=0.9), x=aot.f32[4, 5], labels=aot.i32[4])
aot.train_target("train_two_groups", MLP, loss=cross_entropy,
                 optimizer=aot.MultiOptimizer(
                     (aot.ModelParamTraversal(lambda path, p: "kernel" in path),
                      optax.adam(0.01)),
                     (aot.ModelParamTraversal(lambda path, p: "bias" in path),
                      optax.sgd(0.1, momentum=0.9)),
                 ),
                 x=aot.f32[4, 5], labels=aot.i32[4])

class NormMLP(nn.Module):
    def apply(self, x):
        x = nn.BatchNorm(nn.Dense(x, 8), use_running_average=False, momentum=0.9)
        return nn.Dense(nn.relu(x), 3)

aot.train_target("train_norm", NormMLP, loss=cross_entropy,
                 optimizer=optax.sgd(0.1, momentum=0.9), x=aot.f32[4, 5], labels=aot.i32[4])
"""


class LinenMLP(ln.Module):
    @ln.compact
    def __call__(self, x):
        x = ln.relu(ln.Dense(8)(x))
        return ln.Dense(3)(x)


def linen_loss(params, x, labels):
    logits = LinenMLP().apply({"params": params}, x)
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.sum(jax.nn.one_hot(labels, 3) * logp, axis=-1))


class LinenNormMLP(ln.Module):
    @ln.compact
    def __call__(self, x):
        x = ln.BatchNorm(use_running_average=False, momentum=0.9)(ln.Dense(8)(x))
        return ln.Dense(3)(ln.relu(x))


def linen_norm_loss(params, batch_stats, x, labels):
    logits, updated = LinenNormMLP().apply({"params": params, "batch_stats": batch_stats}, x,
                                           mutable=["batch_stats"])
    logp = jax.nn.log_softmax(logits)
    loss = -jnp.mean(jnp.sum(jax.nn.one_hot(labels, 3) * logp, axis=-1))
    return loss, updated["batch_stats"]


@pytest.fixture(scope="module")
def m():
    return build(SOURCE)


@pytest.fixture(scope="module")
def batch():
    x = np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5)
    return x, np.array([0, 1, 2, 1], np.int32)


def _reference_optimizer(target: str) -> optax.GradientTransformation:
    """The optimizer of `target` written with optax directly."""
    if target == "train":
        return optax.adam(0.01)
    if target == "train_momentum":
        return optax.sgd(0.1, momentum=0.9)
    labels = {layer: {"kernel": "group_0", "bias": "group_1"} for layer in ("Dense_0", "Dense_1")}
    return optax.multi_transform({"group_0": optax.adam(0.01),
                                  "group_1": optax.sgd(0.1, momentum=0.9),
                                  "frozen": optax.set_to_zero()}, labels)


def _assert_trees_close(got, want, rtol=1e-5, atol=1e-6):
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=atol),
                           got, want)


@pytest.mark.parametrize("target", ["train", "train_momentum", "train_two_groups"])
def test_three_train_steps_equal_linen_and_optax(m, batch, target):
    """Parameters and every optimizer-state leaf after each of three steps: a step that
    dropped the updated optimizer state (or applied it to the wrong group) differs from
    the second step on."""
    x, labels = batch
    t = getattr(m, target)
    params, state = t.init(jax.random.key(0))
    params = jax.tree_util.tree_map(lambda a: a + 0.1, params)  # non-zero biases too
    opt = _reference_optimizer(target)
    opt_state, want_params, want_opt = t.init_opt(params), params, opt.init(params)
    _assert_trees_close(opt_state, want_opt)
    for _ in range(3):
        params, state, opt_state, metrics = t.train_step(params, state, opt_state, x, labels)
        loss, grads = jax.value_and_grad(linen_loss)(want_params, x, labels)
        updates, want_opt = opt.update(grads, want_opt, want_params)
        want_params = optax.apply_updates(want_params, updates)
        np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
        assert set(metrics) == {"loss", "accuracy"} and state == {}
        _assert_trees_close(params, want_params)
        _assert_trees_close(opt_state, want_opt)
    assert jax.tree_util.tree_structure(opt_state) == jax.tree_util.tree_structure(
        t.OPT_STATE_SHAPES)


def test_three_train_steps_with_batch_norm_equal_linen_and_optax(m, batch):
    """The train step returns the updated batch statistics, and the next step uses them."""
    x, labels = batch
    t = m.train_norm
    params, state = t.init(jax.random.key(0))
    params = jax.tree_util.tree_map(lambda a: a + 0.1, params)  # no zero bias, no unit scale
    opt = optax.sgd(0.1, momentum=0.9)
    opt_state, want_params, want_opt = t.init_opt(params), params, opt.init(params)
    want_stats = state["batch_stats"]
    for _ in range(3):
        params, state, opt_state, metrics = t.train_step(params, state, opt_state, x, labels)
        (loss, want_stats), grads = jax.value_and_grad(linen_norm_loss, has_aux=True)(
            want_params, want_stats, x, labels)
        updates, want_opt = opt.update(grads, want_opt, want_params)
        want_params = optax.apply_updates(want_params, updates)
        np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
        _assert_trees_close(params, want_params)
        _assert_trees_close(state, {"batch_stats": want_stats})
        # the bias before BatchNorm has a zero gradient in exact arithmetic: its momentum
        # trace is float32 rounding noise (up to 4e-6 measured), so state is compared
        # absolutely at 1e-4, far below the other traces (1e-2 to 1)
        _assert_trees_close(opt_state, want_opt, atol=1e-4)


def test_training_reduces_the_loss(m, batch):
    x, labels = batch
    params, state = m.train.init(jax.random.key(1))
    opt_state = m.train.init_opt(params)
    step = jax.jit(m.train.train_step)
    losses = []
    for _ in range(60):
        params, state, opt_state, metrics = step(params, state, opt_state, x, labels)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.5 * losses[0]


def test_parameter_groups_freeze_unselected_parameters(m, batch):
    x, labels = batch
    params, state = m.train_groups.init(jax.random.key(0))
    params = jax.tree_util.tree_map(lambda a: a + 0.1, params)  # non-zero biases too
    opt_state = m.train_groups.init_opt(params)
    new_params, _, _, _ = m.train_groups.train_step(params, state, opt_state, x, labels)
    for layer in ("Dense_0", "Dense_1"):
        np.testing.assert_array_equal(new_params[layer]["bias"], params[layer]["bias"])
        assert not np.allclose(new_params[layer]["kernel"], params[layer]["kernel"])
    labels = m._train_groups_labels
    assert labels["Dense_0"]["bias"] == "frozen" and labels["Dense_0"]["kernel"] == "group_0"
    assert "optax.multi_transform(" in m.__aotflax_text__


def test_train_step_names_its_batch_when_given_too_few_arrays(m, batch):
    x, _ = batch
    params, state = m.train.init(jax.random.key(0))
    with pytest.raises(TypeError, match=r"train.train_step takes \(params, state, opt_state, "
                                        r"x, labels\): expected 2 batch arrays, got 1"):
        m.train.train_step(params, state, m.train.init_opt(params), x)


def test_loss_must_return_a_scalar():
    errors = build_errors("""
    import optax

    class M(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    def bad_loss(logits, labels):
        return logits

    aot.train_target("t", M, loss=bad_loss, optimizer=optax.sgd(0.1), x=aot.f32[2, 4],
                     labels=aot.i32[2])
    """)
    assert "error[AOT425]" in errors and "scalar" in errors


def test_train_step_executable_round_trips(tmp_path, batch):
    """The compiled train step (in a fresh package import) equals the generated source."""
    import importlib

    from helpers import write_model

    from aotflax.driver import main
    from aotflax.verify import load_package

    model = write_model(SOURCE, name="trainer")
    assert main([str(model), "-o", str(tmp_path / "out"), "--target", "train"]) == 0
    load_package(tmp_path / "out", "_train_rt_pkg")
    mod = importlib.import_module("_train_rt_pkg.trainer")
    x, labels = batch
    params, state = mod.train.init(jax.random.key(0))
    opt_state = mod.train.init_opt(params)
    step = mod.train.load_train_step()
    assert step.kind == "executable"
    start = jax.tree_util.tree_map(np.array, params)  # a copy: the step consumes params
    want = mod.train.train_step(params, state, opt_state, x, labels)
    got = step(params, state, opt_state, x, labels)  # consumes params and opt_state
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                           got, want)
    # two more steps on the returned optimizer state, against optax (the executable
    # threads the state it returns), the last with the flat leaves a checkpoint stores
    # (no optax needed to load and step)
    opt = optax.adam(0.01)
    want_params, want_opt = start, opt.init(start)
    for i in range(3):
        if i:
            leaves = jax.tree_util.tree_leaves(got[2]) if i == 2 else got[2]
            got = step(got[0], got[1], leaves, x, labels)
        grads = jax.grad(linen_loss)(want_params, x, labels)
        updates, want_opt = opt.update(grads, want_opt, want_params)
        want_params = optax.apply_updates(want_params, updates)
        _assert_trees_close(got[0], want_params)
        _assert_trees_close(jax.tree_util.tree_leaves(got[2]), jax.tree_util.tree_leaves(want_opt))
    assert isinstance(got[2], list)
