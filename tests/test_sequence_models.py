"""The zoo's sequence models against Flax Linen, and cached decoding against the full model."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build, perturbed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import linen_zoo  # noqa: E402  (the Linen twins of the zoo, shared with the benchmarks)

MODELS = Path(__file__).resolve().parent.parent / "models"
CFG = {"vocab": 128, "dim": 64, "heads": 4, "layers": 2, "mlp_ratio": 4, "max_len": 64}


@pytest.fixture(scope="module")
def lm():
    source = (MODELS / "transformer.py").read_text()
    source += '\naot.target("lm_full", LM, tokens=aot.i32[1, 16])\n'
    return build(source, header=False)


LinenLM = linen_zoo.TransformerLM


def _tokens(shape, seed=0):
    return np.random.default_rng(seed).integers(0, CFG["vocab"], shape).astype(np.int32)


def test_transformer_lm_equals_linen(lm):
    tokens = _tokens((4, 32))
    variables = LinenLM().init(jax.random.key(0), tokens)
    params, state = lm.lm_eval.init(jax.random.key(0))
    assert jax.tree_util.tree_map(np.shape, params) == jax.tree_util.tree_map(
        np.shape, dict(variables["params"]))
    variables = {"params": perturbed(variables["params"], 1)}  # no zero bias, no unit scale
    logits, new_state = lm.lm_eval.apply(variables["params"], state, tokens)
    np.testing.assert_allclose(logits, LinenLM().apply(variables, tokens), rtol=1e-5,
                               atol=1e-5)
    assert new_state == {}


def test_all_lm_targets_share_one_parameter_tree(lm):
    trees = [jax.tree_util.tree_structure(t.PARAM_SHAPES) for t in lm.TARGETS.values()]
    assert all(t == trees[0] for t in trees)
    assert set(lm.lm_decode.STATE_SHAPES) == {"cache"}


def test_greedy_decoding_with_the_cache_equals_the_full_model(lm):
    params, _ = lm.lm_eval.init(jax.random.key(3))
    _, cache = lm.lm_prefill.init(jax.random.key(0))
    prompt = _tokens((1, 8), seed=1)
    prefill = jax.jit(lm.lm_prefill.apply)
    decode = jax.jit(lm.lm_decode.apply)
    full = jax.jit(lm.lm_full.apply)

    logits, cache = prefill(params, cache, prompt)
    generated = []
    for _ in range(8):
        token = int(jnp.argmax(logits[0, -1]))
        generated.append(token)
        logits, cache = decode(params, cache, np.array([[token]], np.int32))

    sequence = np.zeros((1, 16), np.int32)
    sequence[0, :8] = prompt[0]
    expected = []
    for t in range(8, 16):
        logits_full, _ = full(params, {}, sequence)
        sequence[0, t] = int(jnp.argmax(logits_full[0, t - 1]))
        expected.append(int(sequence[0, t]))
    assert generated == expected
    assert int(cache["cache"]["pos"]["position"]) == 16


def test_three_lm_train_steps_equal_optax(lm):
    """models/transformer.py's train step (dropout, two parameter groups) for three steps
    against optax.multi_transform over jax.grad of the target's own forward pass (its
    forward pass is compared with Linen above; dropout keys are aotflax's own)."""
    import optax

    params, state = lm.lm_train.init(jax.random.key(0))
    opt_state = lm.lm_train.init_opt(params)
    labels = jax.tree_util.tree_map(lambda p: "group_0" if p.ndim > 1 else "group_1", params)
    opt = optax.multi_transform({"group_0": optax.adamw(3e-4, weight_decay=0.1),
                                 "group_1": optax.adam(3e-4),
                                 "frozen": optax.set_to_zero()}, labels)
    want_params, want_opt = params, opt.init(params)

    def loss_fn(p, tokens, rng):
        logits, _ = lm.lm_train.apply(p, state, tokens, rng=rng)
        logp = jax.nn.log_softmax(logits[:, :-1])
        return -jnp.mean(jnp.sum(jax.nn.one_hot(tokens[:, 1:], CFG["vocab"]) * logp, axis=-1))

    @jax.jit
    def reference_step(p, o, tokens, rng):
        loss, grads = jax.value_and_grad(loss_fn)(p, tokens, rng)
        updates, o = opt.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    step_fn = jax.jit(lm.lm_train.train_step)
    for step in range(3):
        tokens, rng = _tokens((4, 32), seed=step), jax.random.key(10 + step)
        params, state, opt_state, metrics = step_fn(params, state, opt_state, tokens, rng=rng)
        want_params, want_opt, loss = reference_step(want_params, want_opt, tokens, rng)
        np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
        for got, want in ((params, want_params), (opt_state, want_opt)):
            assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
            jax.tree_util.tree_map(
                lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), got, want)


# ------------------------------------------------------------------ seq2seq


LinenSeq2Seq = linen_zoo.Seq2Seq


def test_seq2seq_equals_linen_and_scans():
    m = build((MODELS / "seq2seq.py").read_text(), header=False)
    source, target = _tokens((4, 10)) % 32, _tokens((4, 8), seed=2) % 32
    variables = LinenSeq2Seq().init(jax.random.key(0), source, target)
    params, state = m.seq2seq.init(jax.random.key(0))
    assert jax.tree_util.tree_map(np.shape, params) == jax.tree_util.tree_map(
        np.shape, dict(variables["params"]))
    variables = {"params": perturbed(variables["params"], 2)}  # no zero bias
    logits, _ = m.seq2seq.apply(variables["params"], state, source, target)
    np.testing.assert_allclose(logits, LinenSeq2Seq().apply(variables, source, target),
                               rtol=1e-5, atol=1e-5)
    assert m.__aotflax_text__.count("jax.lax.scan(") == 2
