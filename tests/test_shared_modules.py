"""Shared modules passed into other modules keep one parameter set where they were created.

Old flax.nn kept a shared module's parameters in the scope of the module that
called `.shared(...)`, however deep the module that calls it (wmt's shared
embedding is created in `Transformer` and called in `Encoder` and `Decoder`).
The generated function of a receiving module takes the shared module's
parameter subtree as an argument.  Each test compares with a Linen twin in
which the same submodule is shared: equal parameter trees, equal outputs with
random parameters.
"""

from __future__ import annotations

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build, build_errors

RTOL, ATOL = 1e-5, 1e-6


def _tree(tree):
    """Names, shapes and dtypes of a parameter tree."""
    if hasattr(tree, "items"):
        return {k: _tree(v) for k, v in tree.items()}
    return (tuple(tree.shape), str(tree.dtype))


def _random_like(tree, seed: int):
    rng = np.random.default_rng(seed)
    if hasattr(tree, "items"):
        return {k: _random_like(v, seed + i + 1) for i, (k, v) in enumerate(tree.items())}
    return jnp.asarray(rng.standard_normal(tree.shape), tree.dtype)


def _check(target, linen_module, *inputs, seed: int = 0):
    """Same parameter tree as Linen; same outputs with random parameters."""
    linen_params = linen_module.init(jax.random.key(0), *inputs)["params"]
    params, state = target.init(jax.random.key(0))
    assert _tree(params) == _tree(linen_params)
    assert _tree(target.PARAM_SHAPES) == _tree(params)
    values = _random_like(linen_params, seed)
    want = linen_module.apply({"params": values}, *inputs)
    got, _ = target.apply(values, state, *inputs)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------ the wmt pattern

WMT_STYLE = """
class Encoder(nn.Module):
    def apply(self, tokens, vocab_size, shared_embedding=None, features=4):
        if shared_embedding is None:
            embed = nn.Embed.partial(num_embeddings=vocab_size, features=features)
        else:
            embed = shared_embedding
        x = embed(tokens)
        return nn.Dense(x, features, name="dense")


class Decoder(nn.Module):
    def apply(self, encoded, tokens, vocab_size, shared_embedding=None, tied=False):
        if shared_embedding is None:
            embed = nn.Embed.shared(num_embeddings=vocab_size, features=4, name="embed")
        else:
            embed = shared_embedding
        y = embed(tokens) + encoded
        y = nn.LayerNorm(y)
        if tied:
            return embed.attend(y)
        return nn.Dense(y, vocab_size, name="logits")


class Translate(nn.Module):
    def apply(self, inputs, targets, vocab_size=11, share=False, tied=False):
        if share:
            shared = nn.Embed.shared(num_embeddings=vocab_size, features=4)
        else:
            shared = None
        encoded = Encoder(inputs, vocab_size, shared_embedding=shared, name="encoder")
        return Decoder(encoded, targets, vocab_size, shared_embedding=shared, tied=tied,
                       name="decoder")


aot.target("shared_tied", Translate.partial(share=True, tied=True),
           inputs=aot.i32[2, 5], targets=aot.i32[2, 5])
aot.target("shared_untied", Translate.partial(share=True),
           inputs=aot.i32[2, 5], targets=aot.i32[2, 5])
aot.target("unshared", Translate, inputs=aot.i32[2, 5], targets=aot.i32[2, 5])
"""


class LEncoder(linen.Module):
    embed: linen.Module | None = None

    @linen.compact
    def __call__(self, tokens):
        embed = self.embed if self.embed is not None else linen.Embed(11, 4)
        return linen.Dense(4, name="dense")(embed(tokens))


class LDecoder(linen.Module):
    embed: linen.Module | None = None
    tied: bool = False

    @linen.compact
    def __call__(self, encoded, tokens):
        embed = self.embed if self.embed is not None else linen.Embed(11, 4, name="embed")
        y = linen.LayerNorm()(embed(tokens) + encoded)
        return embed.attend(y) if self.tied else linen.Dense(11, name="logits")(y)


class LTranslate(linen.Module):
    share: bool = False
    tied: bool = False

    @linen.compact
    def __call__(self, inputs, targets):
        shared = linen.Embed(11, 4) if self.share else None  # Embed_0, in this module
        encoded = LEncoder(shared, name="encoder")(inputs)
        return LDecoder(shared, self.tied, name="decoder")(encoded, targets)


def _tokens(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 11, (2, 5)).astype(np.int32)


@pytest.fixture(scope="module")
def wmt_style():
    return build(WMT_STYLE)


def test_shared_embedding_passed_to_encoder_and_decoder(wmt_style) -> None:
    m = wmt_style
    x, y = _tokens(1), _tokens(2)
    _check(m.shared_tied, LTranslate(share=True, tied=True), x, y)
    _check(m.shared_untied, LTranslate(share=True), x, y, seed=3)
    _check(m.unshared, LTranslate(), x, y, seed=5)
    params = m.shared_tied.PARAM_SHAPES
    # one embedding, where Translate created it; none inside the children
    assert set(params) == {"Embed_0", "encoder", "decoder"}
    assert "Embed_0" not in params["encoder"] and "embed" not in params["decoder"]


def test_receiving_functions_take_the_subtree(wmt_style) -> None:
    m = wmt_style
    text = m.__aotflax_text__
    # both children of both sharing targets get the creator's subtree
    assert text.count('shared_embedding=params["Embed_0"]') == 4
    assert 'jnp.take(shared_embedding["embedding"]' in text
    # a gradient reaches the one embedding through both children
    x, y = _tokens(1), _tokens(2)
    params, state = m.shared_tied.init(jax.random.key(1))
    grads = jax.grad(lambda p: jnp.sum(m.shared_tied.apply(p, state, x, y)[0] ** 2))(params)
    assert float(jnp.abs(grads["Embed_0"]["embedding"]).sum()) > 0


# ------------------------------------------------------------------ user modules, nesting

NESTED = """
class Block(nn.Module):
    def apply(self, x, features=4):
        return nn.relu(nn.Dense(x, features))


class Inner(nn.Module):
    def apply(self, x, layers=()):
        for layer in layers:
            x = layer(x)
        return nn.Dense(x, 3)


class Middle(nn.Module):
    def apply(self, x, block=None, pair=None):
        x = block(x)
        return Inner(x, layers=pair)


class Net(nn.Module):
    def _create(self, features):
        a = Block.partial(features=features).shared(name="a")
        b = nn.Dense.shared(features=features, name="b")
        return a, b

    def apply(self, x):
        a, b = self._create(4)
        y = a(x)
        y = Middle(y, block=a, pair=[b, a])
        return y + b(x)[..., :3]


aot.target("nested", Net, x=aot.f32[2, 4])
"""


class LBlock(linen.Module):
    features: int = 4

    @linen.compact
    def __call__(self, x):
        return linen.relu(linen.Dense(self.features)(x))


class LInner(linen.Module):
    layers: tuple = ()

    @linen.compact
    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return linen.Dense(3)(x)


class LMiddle(linen.Module):
    block: linen.Module
    pair: tuple

    @linen.compact
    def __call__(self, x):
        return LInner(self.pair, name="Inner_0")(self.block(x))


class LNet(linen.Module):
    @linen.compact
    def __call__(self, x):
        a, b = LBlock(4, name="a"), linen.Dense(4, name="b")
        y = LMiddle(a, (b, a), name="Middle_0")(a(x))
        return y + b(x)[..., :3]


def test_shared_user_module_passed_down_two_levels() -> None:
    """A shared user module and a shared layer, returned by a helper method, passed in a
    list to a module that passes them on again."""
    m = build(NESTED)
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    _check(m.nested, LNet(), x)
    text = m.__aotflax_text__
    assert "def inner(params, x, layers_0, layers_1):" in text
    assert "layers_0=pair_0, layers_1=pair_1" in text


def test_one_specialization_serves_every_shared_instance() -> None:
    """Two shared layers of one configuration: one emitted function, two subtrees."""
    m = build("""
    class Apply(nn.Module):
        def apply(self, x, layer=None):
            return layer(x) * 2.0

    class Net(nn.Module):
        def apply(self, x):
            first = nn.Dense.shared(features=3, name="first")
            second = nn.Dense.shared(features=3, name="second")
            return Apply(x, layer=first) + Apply(x, layer=second) + first(x)

    aot.target("two", Net, x=aot.f32[2, 3])
    """)
    text = m.__aotflax_text__
    assert text.count("def apply(") == 1
    assert 'layer=params["first"]' in text and 'layer=params["second"]' in text

    class Twin(linen.Module):
        @linen.compact
        def __call__(self, x):
            first, second = linen.Dense(3, name="first"), linen.Dense(3, name="second")
            return first(x) * 2.0 + second(x) * 2.0 + first(x)

    _check(m.two, Twin(), np.ones((2, 3), np.float32) * 0.5)


def test_dropout_inside_a_shared_module_called_in_a_child() -> None:
    m = build("""
    class Noisy(nn.Module):
        def apply(self, x):
            return nn.dropout(nn.Dense(x, 4), rate=0.5)

    class Use(nn.Module):
        def apply(self, x, layer=None):
            return layer(x)

    class Net(nn.Module):
        def apply(self, x):
            noisy = Noisy.shared(name="noisy")
            return Use(x, layer=noisy) + noisy(x)

    aot.target("noisy", Net, x=aot.f32[2, 4])
    """)
    params, state = m.noisy.init(jax.random.key(0))
    assert set(params) == {"noisy"}
    x = jnp.ones((2, 4))
    a, _ = m.noisy.apply(params, state, x, rng=jax.random.key(1))
    b, _ = m.noisy.apply(params, state, x, rng=jax.random.key(1))
    np.testing.assert_array_equal(a, b)  # deterministic in the key


# ------------------------------------------------------------------ errors


def test_shared_module_with_other_shapes_in_a_child() -> None:
    out = build_errors("""
    class Use(nn.Module):
        def apply(self, x, layer=None):
            return layer(x)

    class Net(nn.Module):
        def apply(self, x):
            fc = nn.Dense.shared(features=3, name="fc")
            y = fc(x)
            return Use(jnp.concatenate([x, x], axis=-1), layer=fc)

    aot.target("net", Net, x=aot.f32[2, 4])
    """)
    assert "error[AOT312]" in out and "fc/kernel" in out
    assert "Use(jnp.concatenate" in out  # located at the call that changed it


def test_shared_module_with_state_in_a_child() -> None:
    out = build_errors("""
    class Use(nn.Module):
        def apply(self, x, norm=None):
            return norm(x)

    class Net(nn.Module):
        def apply(self, x):
            norm = nn.BatchNorm.shared(use_running_average=False, name="norm")
            return Use(x, norm=norm)

    aot.target("net", Net, x=aot.f32[2, 4])
    """)
    assert "error[AOT370]" in out and "return norm(x)" in out
    assert "SharedArg" not in out and "Scope" not in out


def test_shared_user_module_with_state_in_a_child() -> None:
    out = build_errors("""
    class Normed(nn.Module):
        def apply(self, x):
            return nn.BatchNorm(x, use_running_average=False)

    class Use(nn.Module):
        def apply(self, x, block=None):
            return block(x)

    class Net(nn.Module):
        def apply(self, x):
            block = Normed.shared(name="block")
            return Use(x, block=block)

    aot.target("net", Net, x=aot.f32[2, 4])
    """)
    assert "error[AOT370]" in out and "shared module 'block' keeps state" in out


def test_shared_module_inside_a_function_passed_to_a_child() -> None:
    out = build_errors("""
    class Use(nn.Module):
        def apply(self, x, fn=None):
            return fn(x)

    class Net(nn.Module):
        def apply(self, x):
            fc = nn.Dense.shared(features=3, name="fc")
            return Use(x, fn=lambda y: fc(y))

    aot.target("net", Net, x=aot.f32[2, 4])
    """)
    assert "error[AOT315]" in out and "pass the shared module" in out
