"""The zoo's sequence models against Flax Linen, and cached decoding against the full model."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build

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


def test_training_target_runs_with_dropout_and_groups(lm):
    params, state = lm.lm_train.init(jax.random.key(0))
    opt_state = lm.lm_train.init_opt(params)
    tokens = _tokens((4, 32))
    p2, _, _, metrics = lm.lm_train.train_step(params, state, opt_state, tokens,
                                               rng=jax.random.key(1))
    assert np.isfinite(float(metrics["loss"]))
    labels = {"/".join(k.key for k in path): v for path, v in
              jax.tree_util.tree_flatten_with_path(lm._lm_train_labels)[0]}
    assert labels["block_0/Dense_0/bias"] == "group_1"
    assert labels["block_0/Dense_0/kernel"] == "group_0"
    changed = jax.tree_util.tree_map(lambda a, b: bool(np.any(a != b)), params, p2)
    assert all(jax.tree_util.tree_leaves(changed))


# ------------------------------------------------------------------ seq2seq


LinenSeq2Seq = linen_zoo.Seq2Seq


def test_seq2seq_equals_linen_and_scans():
    m = build((MODELS / "seq2seq.py").read_text(), header=False)
    source, target = _tokens((4, 10)) % 32, _tokens((4, 8), seed=2) % 32
    variables = LinenSeq2Seq().init(jax.random.key(0), source, target)
    params, state = m.seq2seq.init(jax.random.key(0))
    assert jax.tree_util.tree_map(np.shape, params) == jax.tree_util.tree_map(
        np.shape, dict(variables["params"]))
    logits, _ = m.seq2seq.apply(variables["params"], state, source, target)
    np.testing.assert_allclose(logits, LinenSeq2Seq().apply(variables, source, target),
                               rtol=1e-5, atol=1e-5)
    assert m.__aotflax_text__.count("jax.lax.scan(") == 2
