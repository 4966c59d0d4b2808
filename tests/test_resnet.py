"""models/resnet.py equals Flax Linen's ImageNet ResNet with the same variables.

The Linen reference is Flax's `examples/imagenet/models.py` (without `axis_name`,
which only matters under pmap), from `bench/linen_zoo.py`.  The generated model is built from
the model file's modules with small test targets (16x16 images, 4 filters), so
the tests stay fast; the trees, outputs and updated `batch_stats` must agree.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import linen_zoo  # noqa: E402  (the Linen twins of the zoo, shared with the benchmarks)

MODEL = Path(__file__).resolve().parent.parent / "models" / "resnet.py"
SHAPE = (2, 16, 16, 3)
SMALL = "num_filters=4, num_classes=5"


def _source() -> str:
    """The model file's modules with small test targets instead of its own."""
    text = MODEL.read_text()
    modules = text[: text.index("\n# Small images")]
    targets = []
    for net in ("ResNet18", "ResNet50"):
        for train in (True, False):
            name = f"{net.lower()}_{'train' if train else 'eval'}"
            targets.append(f'aot.target("{name}", {net}.partial(train={train}, {SMALL}), '
                           f"x=aot.f32[{', '.join(map(str, SHAPE))}])")
    targets.append(f'aot.target("resnet18_bf16", ResNet18.partial(train=True, {SMALL}, '
                   f"dtype=jnp.bfloat16), x=aot.f32[{', '.join(map(str, SHAPE))}])")
    return modules + "\n\n" + "\n".join(targets) + "\n"


# ---------------------------------------------------------------- Linen reference

# One Linen ResNet (Flax's examples/imagenet/models.py, `train` as a field), shared
# with the benchmarks.
LINEN = {
    "resnet18": partial(linen_zoo.ResNet18, num_filters=4, num_classes=5),
    "resnet50": partial(linen_zoo.ResNet50, num_filters=4, num_classes=5),
}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def gen():
    return build(_source())


@pytest.fixture(scope="module")
def x():
    return jnp.asarray(np.random.default_rng(1).normal(size=SHAPE), jnp.float32)


def _variables(model, x, seed: int):
    """Random variables shaped like Linen's, away from their initial values (a zero
    scale would hide bugs).  Drawn with numpy: jax.random would compile per shape."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    rng = np.random.default_rng(seed)

    def draw(path, s):
        low = 0.5 if path[-1].key == "var" else -1.0  # running variances stay positive
        return jnp.asarray(rng.uniform(low, 1.5, s.shape), s.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.fixture(scope="module", params=["resnet18", "resnet50"])
def net(request, x):
    """(name, Linen model, variables) for one architecture."""
    return request.param, LINEN[request.param], _variables(LINEN[request.param](), x, 2)


def _shapes(tree):
    return jax.tree_util.tree_map(lambda a: (tuple(a.shape), str(a.dtype)), tree)


def _close(got, want, rtol=1e-5, atol=1e-5):
    jax.tree_util.tree_map(
        lambda g, w: np.testing.assert_allclose(np.asarray(g, np.float32),
                                                np.asarray(w, np.float32), rtol=rtol, atol=atol),
        got, want)


# ---------------------------------------------------------------- tests


def test_trees_equal_linen(gen, net):
    name, _, variables = net
    params, state = jax.eval_shape(gen.TARGETS[f"{name}_train"].init_fn, jax.random.key(0))
    assert _shapes(params) == _shapes(variables["params"])
    assert _shapes(state) == {"batch_stats": _shapes(variables["batch_stats"])}
    assert gen.TARGETS[f"{name}_eval"].STATE_SHAPES == gen.TARGETS[f"{name}_train"].STATE_SHAPES


def test_train_matches_linen(gen, net, x):
    name, model, variables = net
    want, updated = model(train=True).apply(variables, x, mutable=["batch_stats"])
    got, new_state = gen.TARGETS[f"{name}_train"].apply(
        variables["params"], {"batch_stats": variables["batch_stats"]}, x)
    _close(got, want)
    _close(new_state, {"batch_stats": updated["batch_stats"]})


def test_eval_matches_linen_and_keeps_stats(gen, net, x):
    name, model, variables = net
    want = model(train=False).apply(variables, x)
    state = {"batch_stats": variables["batch_stats"]}
    got, new_state = gen.TARGETS[f"{name}_eval"].apply(variables["params"], state, x)
    _close(got, want)
    # evaluation only reads the statistics: new_state returns them unchanged
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a, b), new_state, state)


def test_bfloat16_resnet_keeps_float32_statistics(gen, x):
    """bf16 compute, float32 statistics: outputs within bf16 rounding, statistics close."""
    model = LINEN["resnet18"](dtype=jnp.bfloat16, train=True)
    variables = _variables(model, x, 3)
    want, updated = model.apply(variables, x, mutable=["batch_stats"])
    target = gen.resnet18_bf16
    assert {str(s.dtype) for s in jax.tree_util.tree_leaves(target.STATE_SHAPES)} == {"float32"}
    got, new_state = target.apply(variables["params"], {"batch_stats": variables["batch_stats"]},
                                  x)
    assert got.dtype == jnp.bfloat16
    assert {str(a.dtype) for a in jax.tree_util.tree_leaves(new_state)} == {"float32"}
    # Same operations in the same dtypes as Linen: the measured difference is 0.0; one
    # bf16 rounding (2**-7 relative at the bottom of a binade) is left for XLA's fusion
    # choices on another CPU, and the float32 statistics get float32 tolerances.
    _close(got, want, rtol=2**-7, atol=1e-6)
    _close(new_state, {"batch_stats": updated["batch_stats"]}, rtol=1e-5, atol=1e-6)
