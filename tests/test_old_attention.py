"""Old flax.nn attention, every keyword, and its decode `Cache`, against Linen.

`nn.SelfAttention(x, inputs_kv=y, ...)`, `attention_axis` over several axes,
segmentation masks, `dropout_rng=`, `key_padding_mask` semantics and
`cache=nn.attention.Cache().initialize_cache((batch, length))` as the lm1b and
wmt models use them.  Linen's attention is the reference (its masks built with
`make_attention_mask`); the parameter tree is Linen's in every case.
"""

from __future__ import annotations

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build, build_errors, scope_hash

RTOL, ATOL = 1e-5, 1e-5

pytestmark = pytest.mark.filterwarnings("ignore:SelfAttention will be deprecated")


def _tree(tree):
    if hasattr(tree, "items"):
        return {k: _tree(v) for k, v in tree.items()}
    return (tuple(tree.shape), str(tree.dtype))


def _random_like(tree, seed: int):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(rng.standard_normal(a.shape) * 0.5, a.dtype) for a in leaves])


def _plain(tree):
    return {k: _plain(v) for k, v in tree.items()} if hasattr(tree, "items") else tree


# ------------------------------------------------------------------ keywords

KEYWORDS = """
class Att(nn.Module):
    def apply(self, x, y, seg, kseg, pad, kpad, img, case="cross"):
        if case == "cross":  # wmt's encoder-decoder attention
            return nn.SelfAttention(x, num_heads=2, inputs_kv=y, qkv_features=8,
                                    attention_axis=(1,), causal_mask=False, bias=False,
                                    kernel_init=nn.initializers.xavier_uniform(),
                                    bias_init=nn.initializers.normal(stddev=1e-6),
                                    broadcast_dropout=False, dropout_rate=0.1,
                                    deterministic=True)
        if case == "self_kv":
            return nn.SelfAttention(x, num_heads=2, inputs_kv=x, out_features=3)
        if case == "segments":
            return nn.SelfAttention(x, num_heads=2, segmentation=seg, causal_mask=True)
        if case == "cross_segments":
            return nn.MultiHeadDotProductAttention(x, y, num_heads=2, segmentation=seg,
                                                   key_segmentation=kseg, padding_mask=pad,
                                                   key_padding_mask=kpad)
        if case == "key_padding_alone":  # queries attend everywhere (old flax.nn's last)
            return nn.MultiHeadDotProductAttention(x, y, num_heads=2, key_padding_mask=kpad)
        if case == "query_padding_alone":  # across inputs, the keys attend everywhere
            return nn.MultiHeadDotProductAttention(x, y, num_heads=2, padding_mask=pad)
        if case == "self_key_padding":  # self-attention: the one mask stands for both
            return nn.SelfAttention(x, num_heads=2, key_padding_mask=pad)
        if case == "self_kv_padding":  # inputs_kv=x is x: self-attention still (wmt)
            return nn.SelfAttention(x, num_heads=2, inputs_kv=x, padding_mask=pad)
        if case == "image_joint":  # old flax.nn's default: all axes between batch and features
            return nn.SelfAttention(img, num_heads=2)
        if case == "image_rows":
            return nn.SelfAttention(img, num_heads=2, attention_axis=(1,))
        if case == "image_flat_causal":
            return nn.SelfAttention(img, num_heads=1, attention_axis=(1, 2), causal_mask=True,
                                    attention_fn=nn.dot_product_attention)


SPECS = dict(x=aot.f32[2, 5, 6], y=aot.f32[2, 7, 4], seg=aot.i32[2, 5], kseg=aot.i32[2, 7],
             pad=aot.f32[2, 5], kpad=aot.f32[2, 7], img=aot.f32[2, 3, 4, 6])
aot.target("cross", Att.partial(case="cross"), **SPECS)
aot.target("self_kv", Att.partial(case="self_kv"), **SPECS)
aot.target("segments", Att.partial(case="segments"), **SPECS)
aot.target("cross_segments", Att.partial(case="cross_segments"), **SPECS)
aot.target("key_padding_alone", Att.partial(case="key_padding_alone"), **SPECS)
aot.target("query_padding_alone", Att.partial(case="query_padding_alone"), **SPECS)
aot.target("self_key_padding", Att.partial(case="self_key_padding"), **SPECS)
aot.target("self_kv_padding", Att.partial(case="self_kv_padding"), **SPECS)
aot.target("image_joint", Att.partial(case="image_joint"), **SPECS)
aot.target("image_rows", Att.partial(case="image_rows"), **SPECS)
aot.target("image_flat_causal", Att.partial(case="image_flat_causal"), **SPECS)
"""


def _inputs():
    rng = np.random.default_rng(0)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    return dict(x=f(2, 5, 6), y=f(2, 7, 4), seg=np.array([[0, 0, 1, 1, 1], [0, 1, 1, 2, 2]],
                                                         np.int32),
                kseg=np.array([[0, 0, 0, 1, 1, 1, 2], [1, 1, 1, 1, 2, 2, 2]], np.int32),
                pad=np.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], np.float32),
                kpad=np.array([[1, 1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0, 0]], np.float32),
                img=f(2, 3, 4, 6))


def _flat(fn):
    """Linen attention over the flattened middle axes of [b, h, w, f]."""
    def run(img):
        b, h, w, f = img.shape
        return fn(img.reshape(b, h * w, f)).reshape(b, h, w, -1)
    return run


def _rows(fn):
    """Linen attention over axis 1 of [b, h, w, f] (axis 2 a batch axis)."""
    def run(img):
        return jnp.swapaxes(fn(jnp.swapaxes(img, 1, 2)), 1, 2)
    return run


LINEN = {
    "cross": lambda i: linen.MultiHeadDotProductAttention(
        2, qkv_features=8, use_bias=False, kernel_init=linen.initializers.xavier_uniform(),
        name="SelfAttention_0")(i["x"], i["y"]),
    "self_kv": lambda i: linen.SelfAttention(2, out_features=3)(i["x"]),
    "segments": lambda i: linen.SelfAttention(2)(i["x"], mask=linen.combine_masks(
        linen.make_causal_mask(i["seg"]),
        linen.make_attention_mask(i["seg"], i["seg"], jnp.equal))),
    "cross_segments": lambda i: linen.MultiHeadDotProductAttention(2)(
        i["x"], i["y"], mask=linen.combine_masks(
            linen.make_attention_mask(i["pad"], i["kpad"]),
            linen.make_attention_mask(i["seg"], i["kseg"], jnp.equal))),
    "key_padding_alone": lambda i: linen.MultiHeadDotProductAttention(2)(
        i["x"], i["y"], mask=linen.make_attention_mask(jnp.ones((2, 5)), i["kpad"])),
    "query_padding_alone": lambda i: linen.MultiHeadDotProductAttention(2)(
        i["x"], i["y"], mask=linen.make_attention_mask(i["pad"], jnp.ones((2, 7)))),
    "self_key_padding": lambda i: linen.SelfAttention(2)(
        i["x"], mask=linen.make_attention_mask(i["pad"], i["pad"])),
    "self_kv_padding": lambda i: linen.SelfAttention(2)(
        i["x"], mask=linen.make_attention_mask(i["pad"], i["pad"])),
    "image_joint": lambda i: _flat(lambda v: linen.SelfAttention(2)(v))(i["img"]),
    "image_rows": lambda i: _rows(lambda v: linen.SelfAttention(2)(v))(i["img"]),
    "image_flat_causal": lambda i: _flat(lambda v: linen.SelfAttention(1)(
        v, mask=linen.make_causal_mask(v[..., 0])))(i["img"]),
}


class _Wrap(linen.Module):
    fn: object

    @linen.compact
    def __call__(self, i):
        return self.fn(i)


@pytest.fixture(scope="module")
def keywords():
    return build(KEYWORDS)


@pytest.mark.parametrize("case", sorted(LINEN))
def test_old_keywords_match_linen(keywords, case: str) -> None:
    t, inputs = getattr(keywords, case), _inputs()
    twin = _Wrap(LINEN[case])
    shapes = jax.eval_shape(twin.init, jax.random.key(0), inputs)["params"]
    assert _tree(t.PARAM_SHAPES) == _tree(shapes)  # Linen's tree, whatever the keywords
    params = _random_like(_plain(shapes), seed=len(case))
    want = twin.apply({"params": params}, inputs)
    got, _ = t.apply(params, {}, *(inputs[k] for k in t.INPUTS))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_dropout_rng_is_the_key_given() -> None:
    m = build("""
    class M(nn.Module):
        def apply(self, x):
            key = nn.make_rng()
            a = nn.SelfAttention(x, 2, dropout_rate=0.5, dropout_rng=key, name="a")
            b = nn.SelfAttention(x, 2, dropout_rate=0.5, name="b")
            return a, b

    aot.target("t", M, x=aot.f32[2, 5, 4])
    """)
    x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    params, _ = m.t.init(jax.random.key(0))
    key = jax.random.key(7)
    (a, b), _ = m.t.apply(params, {}, x, rng=key)
    (a2, _), _ = m.t.apply(params, {}, x, rng=key)
    np.testing.assert_array_equal(a, a2)
    layer = linen.SelfAttention(2, dropout_rate=0.5, deterministic=False)
    want_b = layer.apply({"params": params["b"]}, x,
                         dropout_rng=jax.random.fold_in(key, scope_hash("b")))
    np.testing.assert_allclose(b, want_b, rtol=RTOL, atol=ATOL)
    # `a` used the key it was given, not its own path's
    own = layer.apply({"params": params["a"]}, x,
                      dropout_rng=jax.random.fold_in(key, scope_hash("a")))
    assert not np.allclose(a, own)
    text = m.__aotflax_text__
    assert "fold_in(rng, " + str(scope_hash("a")) not in text


# ------------------------------------------------------------------ the function

FUNCTION = """
class Att(nn.Module):
    def apply(self, q, k, v, b, case="joint"):
        if case == "joint":  # old flax.nn's default: every axis between batch and heads
            return nn.dot_product_attention(q, k, v)
        if case == "rows":  # axis 2 becomes a batch axis
            return nn.dot_product_attention(q, k, v, axis=(1,))
        if case == "joint_bias":  # bias shaped as old flax.nn's weights, broadcast
            return nn.attention.dot_product_attention(q, k, v, jnp.float32, b, (1, 2))
        if case == "dropout":  # no dropout_rng: drawn as nn.make_rng() would be here
            return nn.dot_product_attention(q, k, v, axis=1, dropout_rate=0.5,
                                            broadcast_dropout=False)
        if case == "dropout_key":
            return nn.dot_product_attention(q, k, v, axis=1, dropout_rate=0.5,
                                            broadcast_dropout=False,
                                            dropout_rng=nn.make_rng())


# queries [b, x, y, heads, depth]; keys and values of other attention lengths, values deeper
SPECS = dict(q=aot.f32[2, 3, 4, 2, 5], k=aot.f32[2, 2, 4, 2, 5], v=aot.f32[2, 2, 4, 2, 6],
             b=aot.f32[2, 1, 3, 4, 1, 4])
for _case in ("joint", "rows", "joint_bias", "dropout", "dropout_key"):
    aot.target(_case, Att.partial(case=_case), **SPECS)
"""


@pytest.fixture(scope="module")
def function():
    return build(FUNCTION)


def _function_inputs():
    rng = np.random.default_rng(3)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    return f(2, 3, 4, 2, 5), f(2, 2, 4, 2, 5), f(2, 2, 4, 2, 6), f(2, 1, 3, 4, 1, 4)


def test_dot_product_attention_over_several_axes_equals_linen_on_the_flattened_axes(
        function) -> None:
    q, k, v, b = _function_inputs()
    got, _ = function.joint.apply({}, {}, q, k, v, b)
    flat = lambda t: t.reshape(2, -1, 2, t.shape[-1])  # noqa: E731
    want = linen.dot_product_attention(flat(q), flat(k), flat(v)).reshape(2, 3, 4, 2, 6)
    assert got.shape == (2, 3, 4, 2, 6)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    # a bias [batch, heads, query dims..., key dims...] joins the same flattening
    got, _ = function.joint_bias.apply({}, {}, q, k, v, b)
    bias = np.broadcast_to(b, (2, 2, 3, 4, 2, 4)).reshape(2, 2, 12, 8)
    want = linen.dot_product_attention(flat(q), flat(k), flat(v), bias=bias)
    np.testing.assert_allclose(got, want.reshape(2, 3, 4, 2, 6), rtol=RTOL, atol=ATOL)


def test_dot_product_attention_axis_makes_the_other_dims_batch_dims(function) -> None:
    q, k, v, b = _function_inputs()
    got, _ = function.rows.apply({}, {}, q, k, v, b)
    swap = lambda t: jnp.swapaxes(t, 1, 2)  # noqa: E731
    want = swap(linen.dot_product_attention(swap(q), swap(k), swap(v)))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_dot_product_attention_dropout_without_a_key_draws_make_rng(function) -> None:
    q, k, v, b = _function_inputs()
    key = jax.random.key(5)
    got, _ = function.dropout.apply({}, {}, q, k, v, b, rng=key)
    same, _ = function.dropout_key.apply({}, {}, q, k, v, b, rng=key)
    np.testing.assert_array_equal(got, same)
    swap = lambda t: jnp.swapaxes(t, 1, 2)  # noqa: E731
    want = swap(linen.dot_product_attention(
        swap(q), swap(k), swap(v), dropout_rate=0.5, broadcast_dropout=False,
        deterministic=False, dropout_rng=jax.random.fold_in(key, scope_hash("make_rng_0"))))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    assert not np.allclose(got, function.rows.apply({}, {}, q, k, v, b)[0])


@pytest.mark.parametrize("call,message", [
    ("nn.dot_product_attention(q, q, q, axis=(3,))",
     "error[AOT203]: nn.dot_product_attention: axis=(3,) must name distinct axes between the "
     "batch axis and the heads of rank-5 arrays [batch, dims..., heads, depth] (1 to 2)"),
    ("nn.dot_product_attention(q, k, k, axis=1)",
     "must agree on the batch axis, the heads and the axes attention does not run over"),
    ("nn.dot_product_attention(q, q, q, mask=jnp.ones((12, 12)), axis=(1, 2))",
     "mask= attends over the axis before the heads, got axis=(1, 2)"),
    ("nn.dot_product_attention(q, q, q, dropout_rate=0.1, dropout_rng=q)",
     "error[AOT202]: nn.dot_product_attention: dropout_rng must be a random key"),
])
def test_dot_product_attention_argument_errors(call: str, message: str) -> None:
    out = build_errors(f"""
    class M(nn.Module):
        def apply(self, q, k):
            return {call}

    aot.target("t", M, q=aot.f32[2, 3, 4, 2, 5], k=aot.f32[2, 3, 3, 2, 5])
    """)
    assert message in out, out


def test_dot_product_attention_dropout_outside_a_module_needs_a_key() -> None:
    out = build_errors("""
    import optax


    class M(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 2)

    def loss(logits):
        q = logits[:, None, None, :]
        return nn.dot_product_attention(q, q, q, dropout_rate=0.1).sum()

    aot.train_target("t", M, loss=loss, optimizer=optax.sgd(0.1), x=aot.f32[2, 3])
    """)
    assert "error[AOT203]: nn.dot_product_attention: dropout outside a module needs " \
           "dropout_rng=" in out, out
    assert "hint: pass dropout_rng=key, or deterministic=True" in out


# ------------------------------------------------------------------ the decode cache

LM = """
from jax import lax
import numpy as np


class AddPositionEmbs(nn.Module):
    def apply(self, inputs, max_len=16, cache=None):
        length = inputs.shape[1]
        pos_embedding = self.param("pos_embedding", (1, max_len, inputs.shape[-1]),
                                   nn.initializers.normal(stddev=1.0))
        pe = pos_embedding[:, :length, :]
        if cache:  # as lm1b: the cache's position index tracks the decoding position
            if self.is_initializing():
                cache.store(np.array((4, 1, 1), dtype=np.int32))
            else:
                cache_entry = cache.retrieve(None)
                i = cache_entry.i
                one = jnp.array(1, jnp.uint32)
                cache_entry = cache_entry.replace(i=cache_entry.i + one)
                cache.store(cache_entry)
                pe = jnp.take(pos_embedding, i, axis=1)[:, None, :]
        return inputs + pe


class Block(nn.Module):
    def apply(self, inputs, padding_mask=None, cache=None):
        x = nn.LayerNorm(inputs)
        x = nn.SelfAttention(x, num_heads=2, qkv_features=8, attention_axis=(1,),
                             causal_mask=True, padding_mask=padding_mask, bias=False,
                             deterministic=True, cache=cache)
        x = x + inputs
        return x + nn.Dense(nn.gelu(nn.Dense(nn.LayerNorm(x), 16)), x.shape[-1])


class LM(nn.Module):
    def apply(self, inputs, vocab_size=11, num_layers=2, cache=None):
        padding_mask = jnp.where(inputs > 0, 1, 0).astype(jnp.float32)[..., None]
        x = nn.Embed(inputs.astype("int32"), num_embeddings=vocab_size, features=6,
                     name="embed")
        x = AddPositionEmbs(x, cache=cache)
        for _ in range(num_layers):
            x = Block(x, padding_mask=padding_mask, cache=cache)
        return nn.Dense(nn.LayerNorm(x), vocab_size)


CACHE = nn.attention.Cache().initialize_cache((2, 16))
aot.target("full", LM, inputs=aot.i32[2, 16])
aot.target("step", LM.partial(cache=CACHE), inputs=aot.i32[2, 1])
"""


@pytest.fixture(scope="module")
def lm():
    return build(LM)


def test_cache_state_is_linens_layout(lm) -> None:
    params, state = lm.step.init(jax.random.key(0))
    assert _tree(params) == _tree(lm.full.PARAM_SHAPES)  # decoding adds no parameters
    cache = state["cache"]
    assert _tree(cache["AddPositionEmbs_0"]) == {"cache_index": ((), "uint32")}
    assert _tree(cache["Block_1"]["SelfAttention_0"]) == {
        "cached_key": ((2, 16, 2, 4), "float32"), "cached_value": ((2, 16, 2, 4), "float32"),
        "cache_index": ((), "int32")}
    assert lm.full.STATE_SHAPES == {}


def test_greedy_decoding_equals_the_full_causal_forward(lm) -> None:
    params, _ = lm.full.init(jax.random.key(0))
    params = _random_like(params, seed=4)
    tokens = np.random.default_rng(1).integers(1, 11, (2, 16)).astype(np.int32)
    tokens[1, 11:] = 0  # padding at the end of the second row
    full, _ = lm.full.apply(params, {}, tokens)
    _, state = lm.step.init(jax.random.key(0))
    step = jax.jit(lm.step.apply)
    outs = []
    for t in range(16):
        logits, state = step(params, state, tokens[:, t:t + 1])
        outs.append(logits)
    # every real token's logits; a padding query attends to nothing in either
    real = tokens > 0
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1)[real], full[real], rtol=RTOL,
                               atol=ATOL)
    assert int(state["cache"]["AddPositionEmbs_0"]["cache_index"]) == 16
    # greedy generation: feed back the argmax, the cache carries the prefix
    _, state = lm.step.init(jax.random.key(0))
    token, generated = tokens[:, :1], []
    for _ in range(5):
        logits, state = step(params, state, token)
        token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        generated.append(token)
    prefix = jnp.concatenate([tokens[:, :1]] + generated[:-1], axis=1)
    again, _ = lm.full.apply(params, {}, jnp.pad(prefix, ((0, 0), (0, 11))))
    np.testing.assert_array_equal(jnp.argmax(again[:, :5], -1),
                                  jnp.concatenate(generated, axis=1))


# ------------------------------------------------------------------ errors


def test_attention_keyword_errors() -> None:
    out = build_errors("""
    class M(nn.Module):
        def apply(self, x, img):
            a = nn.SelfAttention(x, 2, attention_axis=(2,))
            b = nn.SelfAttention(img, 2, attention_axis=(1, 2), mask=jnp.ones((12, 12)))
            c = nn.SelfAttention(x, 2, attention_fn=jnp.dot)
            d = nn.SelfAttention(x, 2, dropout_rate=0.1, dropout_rng=x)
            e = nn.SelfAttention(x, 2, cache=nn.attention.Cache().initialize_cache((2, 8)))
            f = nn.SelfAttention(x, 2, causal_mask=True, cache=nn.attention.Cache())
            return a

    aot.target("t", M, x=aot.f32[2, 5, 4], img=aot.f32[2, 3, 4, 4])
    """)
    assert "attention_axis=(2,) must name distinct axes" in out
    assert "mask= and decode=True attend over the axis before the features" in out
    assert "attention_fn must be nn.dot_product_attention" in out
    assert "dropout_rng must be a random key" in out
    assert "cache= needs causal_mask=True" in out
    assert "error[AOT372]: nn.SelfAttention: this nn.attention.Cache has no shape" in out
    assert "initialize_cache((batch, max_length))" in out


def test_feature_counts_must_be_ints_and_zero_is_the_default() -> None:
    """`qkv_features=(32,)` (found by fuzzing a mutated flax.nn tagger) was an internal
    error; 0 and None give the input's features, as Linen's `qkv_features or ...`."""
    out = build_errors("""
    class M(nn.Module):
        def apply(self, x):
            a = nn.SelfAttention(x, 2, qkv_features=(4,))
            b = nn.SelfAttention(x, 2, out_features=2.5)
            return a, b

    aot.target("t", M, x=aot.f32[2, 5, 4])
    """)
    assert "internal error" not in out
    assert "'qkv_features' must be int, got tuple (int 4)" in out
    assert "'out_features' must be int, got float 2.5" in out
    m = build("""
    class M(nn.Module):
        def apply(self, x):
            return nn.SelfAttention(x, 2, qkv_features=0, out_features=None)

    aot.target("t", M, x=aot.f32[2, 5, 4])
    """)
    shapes = m.t.PARAM_SHAPES["SelfAttention_0"]
    assert shapes["query"]["kernel"].shape == (4, 2, 2) and shapes["out"]["kernel"].shape[-1] == 4


def test_cache_errors_are_located() -> None:
    out = build_errors("""
    class M(nn.Module):
        def apply(self, x, cache=None):
            entry = cache.retrieve(None)
            k = entry.key
            cache.store(entry.replace(value=x))
            cache.store(x)
            return nn.SelfAttention(x, 2, causal_mask=True, cache=cache)

    aot.target("t", M.partial(cache=nn.attention.Cache().initialize_cache((3, 8))),
               x=aot.f32[2, 1, 4])
    """)
    assert "cache_entry.key is not supported: a module's cache entry keeps its position" in out
    assert "cache_entry.replace(value=...) is not supported" in out
    assert "cache.store() takes this module's entry from cache.retrieve(), got array" in out
    assert "the cache was initialized for (batch..., length) = (3, 8)" in out
    assert "CacheEntry" not in out and "AttentionCache" not in out


ATTENTION_FN = """
import functools


def passthrough(query, key, value, dtype=jnp.float32, bias=None, axis=None,
                broadcast_dropout=True, dropout_rng=None, dropout_rate=0.0,
                deterministic=False, precision=None):
    # what old flax.nn's attention hands its attention_fn, given back to the built-in one
    assert axis == (1,) and dtype == jnp.float32 and deterministic
    return nn.dot_product_attention(query, key, value, dtype=dtype, bias=bias, axis=axis,
                                    deterministic=deterministic, precision=precision)


def linear_attention(query, key, value, bias=None, scale=1.0, **unused):
    # a kernelized attention of our own (no softmax): phi(q) (phi(k)^T v), normalized
    q, k = jax.nn.elu(query) + 1.0, jax.nn.elu(key) + 1.0
    kv = jnp.einsum("blhd,blhe->bhde", k, value)
    norm = jnp.einsum("blhd,bhd->blh", q, k.sum(axis=1))
    return scale * jnp.einsum("blhd,bhde->blhe", q, kv) / norm[..., None]


class Custom(nn.Module):
    def apply(self, x, pad, fn="passthrough"):
        attention_fn = passthrough if fn == "passthrough" else functools.partial(
            linear_attention, scale=2.0)
        return nn.SelfAttention(x, num_heads=2, qkv_features=8, causal_mask=True,
                                padding_mask=pad, attention_fn=attention_fn,
                                deterministic=True)


class BuiltIn(nn.Module):
    def apply(self, x, pad):
        return nn.SelfAttention(x, num_heads=2, qkv_features=8, causal_mask=True,
                                padding_mask=pad, deterministic=True)


class Cross(nn.Module):
    def apply(self, x, y, kpad, custom=True):
        fn = passthrough if custom else nn.dot_product_attention
        return nn.MultiHeadDotProductAttention(x, y, num_heads=2, key_padding_mask=kpad,
                                               attention_axis=(1,), attention_fn=fn,
                                               deterministic=True)

aot.target("custom", Custom, x=aot.f32[2, 5, 6], pad=aot.f32[2, 5, 1])
aot.target("linear", Custom.partial(fn="linear"), x=aot.f32[2, 5, 6], pad=aot.f32[2, 5, 1])
aot.target("builtin", BuiltIn, x=aot.f32[2, 5, 6], pad=aot.f32[2, 5, 1])
aot.target("cross_custom", Cross, x=aot.f32[2, 5, 6], y=aot.f32[2, 3, 4], kpad=aot.f32[2, 3])
aot.target("cross_builtin", Cross.partial(custom=False), x=aot.f32[2, 5, 6],
           y=aot.f32[2, 3, 4], kpad=aot.f32[2, 3])
"""


def test_attention_fn_of_the_model_file_gets_old_flax_nn_arguments() -> None:
    """`attention_fn=` (the Performer's way in): the projections, and the causal and
    padding masks as old flax.nn's bias.  Handing them back to dot_product_attention
    equals the built-in path; a kernelized function of our own equals jnp on the same
    projections; the parameter tree is the layer's."""
    m = build(ATTENTION_FN)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 6)).astype(np.float32)
    pad = np.ones((2, 5, 1), np.float32)
    pad[1, 3:] = 0.0
    params, _ = m.builtin.init(jax.random.key(0))
    assert _tree(m.custom.init(jax.random.key(0))[0]) == _tree(params)
    want, _ = m.builtin.apply(params, {}, x, pad)
    got, _ = m.custom.apply(params, {}, x, pad)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    p = params["SelfAttention_0"]
    q, k, v = (jnp.einsum("blf,fhd->blhd", x, p[n]["kernel"]) + p[n]["bias"][None, None]
               for n in ("query", "key", "value"))
    q, k = jax.nn.elu(q) + 1.0, jax.nn.elu(k) + 1.0
    att = 2.0 * jnp.einsum("blhd,bhde->blhe", q, jnp.einsum("blhd,blhe->bhde", k, v)) / \
        jnp.einsum("blhd,bhd->blh", q, k.sum(axis=1))[..., None]
    want = jnp.einsum("blhd,hdf->blf", att, p["out"]["kernel"]) + p["out"]["bias"][None, None]
    got, _ = m.linear.apply(params, {}, x, pad)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    # across two inputs with a key mask alone: the queries' side attends everywhere
    y = rng.standard_normal((2, 3, 4)).astype(np.float32)
    kpad = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
    params, _ = m.cross_builtin.init(jax.random.key(1))
    want, _ = m.cross_builtin.apply(params, {}, x, y, kpad)
    got, _ = m.cross_custom.apply(params, {}, x, y, kpad)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_attention_fn_errors_are_located() -> None:
    out = build_errors("""
    class M(nn.Module):
        def apply(self, x):
            return nn.SelfAttention(x, num_heads=2, attention_fn=nn.relu)

    aot.target("t", M, x=aot.f32[2, 5, 4])
    """)
    assert "attention_fn must be nn.dot_product_attention or a function of the model " \
        "file, got" in out
    out = build_errors("""
    def shrink(query, key, value, **kwargs):
        return query[..., 0]

    class M(nn.Module):
        def apply(self, x):
            return nn.SelfAttention(x, num_heads=2, attention_fn=shrink)

    aot.target("t", M, x=aot.f32[2, 5, 4])
    """)
    assert "attention_fn must return an array [2, 5, 2, depth], the query's shape up to its " \
        "depth, got array f32[2, 5, 2]" in out, out
