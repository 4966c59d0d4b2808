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


@pytest.fixture(scope="module")
def m():
    return build(SOURCE)


@pytest.fixture(scope="module")
def batch():
    x = np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5)
    return x, np.array([0, 1, 2, 1], np.int32)


def test_train_step_equals_linen_and_optax(m, batch):
    x, labels = batch
    params, state = m.train.init(jax.random.key(0))
    opt_state = m.train.init_opt(params)
    new_params, new_state, opt_state2, metrics = m.train.train_step(
        params, state, opt_state, x, labels)
    opt = optax.adam(0.01)
    loss, grads = jax.value_and_grad(linen_loss)(params, x, labels)
    updates, _ = opt.update(grads, opt.init(params), params)
    expected = optax.apply_updates(params, updates)
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
    assert set(metrics) == {"loss", "accuracy"} and new_state == {}
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                           new_params, expected)
    assert jax.tree_util.tree_structure(opt_state2) == jax.tree_util.tree_structure(
        m.train.OPT_STATE_SHAPES)


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
    want = mod.train.train_step(params, state, opt_state, x, labels)
    got = step(params, state, opt_state, x, labels)  # consumes params and opt_state
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                           got, want)
    # a second step with the returned optimizer state: its tree must match again
    again = step(got[0], got[1], got[2], x, labels)
    # or with the flat leaves a checkpoint stores (no optax needed to load and step)
    flat = step(again[0], again[1], jax.tree_util.tree_leaves(again[2]), x, labels)
    assert isinstance(flat[2], list)
