"""Attention: MultiHeadDotProductAttention, SelfAttention, dot_product_attention, masks.

The layers take old `flax.nn` arguments (`inputs_kv`, `attention_axis`,
`causal_mask`, `padding_mask`, `key_padding_mask`, `segmentation`,
`key_segmentation`, `cache`, `bias`, `dropout_rng`, `dropout_rate` with
`deterministic`) plus Linen's `mask=` and `decode=`, and declare Linen's tree:
`query` / `key` / `value` DenseGeneral kernels `(in, heads, head_dim)` with
biases `(heads, head_dim)`, and `out` with kernel `(heads, head_dim, features)`.

`attention_axis` is old flax.nn's: attention runs jointly over those axes of
`[batch, dims..., features]` (flattened in the order given; the other dims are
batch dims); None means all of them (for `[batch, length, features]`, the
length axis, as in Linen).  Old-style masks are combined into one boolean mask
applied the way Linen applies `mask=`: `jnp.where(mask, weights, finfo.min)`
before the softmax (old flax.nn added -1e10: the same softmax wherever a row
keeps a position).  As in old flax.nn's last version, in self-attention
`padding_mask` and `key_padding_mask` each stand for the other, and across two inputs
a side without one attends everywhere; `key_segmentation` defaults to `segmentation`.

Decoding keeps Linen's `cache` collection: `cached_key` and `cached_value`
`(*batch, max_length, heads, head_dim)` and `cache_index` (). A call writes
its keys and values at `cache_index` and advances it by the query length;
query position `i` sees cache positions `<= cache_index + i`.  With one query
position this is exactly Linen's decode step and old flax.nn's `cache=` step
(whose length is the `nn.attention.Cache().initialize_cache((batch, length))`
of the target); with a longer query (a prefill) it is causal attention over the
prefix plus the chunk.  With `cache=`, `padding_mask` masks the query positions
(the cache fill masks the keys), as old flax.nn did.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .. import dtypes as dt
from .. import shapes as sh
from ..program import Code, Tensor
from ..quoting import literal
from ..values import AttentionCache, DType, OpRef, describe_value
from . import elementwise  # noqa: F401  (registers the functions looked up below)
from . import initializers as inits
from .calls import FnCall, LayerCall
from .layers import precision_code
from .linear import dense_general, sub_call
from .registry import REGISTRY, Entry, Signature
from .stochastic import RngKey

_DEFAULTS: dict[str, Any] = {
    "float32": DType("float32"),
    "lecun_normal": inits.LECUN_NORMAL,
    "zeros": inits.ZEROS,
    "multiply": OpRef(REGISTRY.entry("jnp", "multiply"), "jnp.multiply"),
}

#: Arguments shared by MultiHeadDotProductAttention and SelfAttention (old order first).
_COMMON = (
    "num_heads, dtype=None, qkv_features=None, out_features=None, attention_axis=None, "
    "causal_mask=False, padding_mask=None, key_padding_mask=None, segmentation=None, "
    "key_segmentation=None, cache=None, broadcast_dropout=True, dropout_rng=None, "
    "dropout_rate=0.0, deterministic=False, precision=None, kernel_init=lecun_normal, "
    "bias_init=zeros, bias=True, param_dtype=float32, mask=None, decode=False, "
    "max_length=None, out_kernel_init=None, out_bias_init=None, attention_fn=None"
)


def _register(name: str, kind: str, sig: str, rule: Any, template: str, doc: str,
              linen_name: str | None = None) -> Entry:
    # every entry here takes `dropout_rng=`, a key
    return REGISTRY.add(Entry(name, ("nn",), kind, Signature.parse(sig, _DEFAULTS), rule,
                              template, linen_name=linen_name or (name if kind == "layer"
                                                                  else None), doc=doc,
                              extra={"takes_keys": True}))


# ------------------------------------------------------------- core


def _full_rank(call: FnCall, value: Tensor, target: tuple[int, ...], what: str) -> Code:
    """`value` reshaped with leading 1s to broadcast against `target` (strict rank promotion)."""
    try:
        ok = sh.broadcast_shapes(value.shape, target) == target
    except sh.ShapeError:
        ok = False
    if not ok or value.ndim > len(target):
        raise call.fail(f"{call.written}: {what} {value.describe()} does not broadcast to the "
                        f"attention weights' shape {target} (batch..., heads, q_length, "
                        "kv_length)", "AOT210")
    if value.ndim == len(target):
        return Code((value,))
    ones = (1,) * (len(target) - value.ndim)
    return Code.of(value, f".reshape({literal(ones)} + ", value, ".shape)")


def attend(call: FnCall, query: Tensor, key: Tensor, value: Tensor, *, dtype: str | None,
           bias: Code | None = None, mask: Code | None = None,
           dropout: tuple[Code, float, bool] | None = None, precision: str = "") -> Tensor:
    """Linen's `dot_product_attention` on `[batch..., length, heads, depth]` arrays.

    `mask` / `bias` are already full-rank codes; `dropout` is (rng, rate, broadcast).
    """
    if dtype is None:
        dtype = dt.result_type(*[(t.dtype, t.weak) for t in (query, key, value)])[0]
    batch, lq, heads = query.shape[:-3], query.shape[-3], query.shape[-2]
    lk = key.shape[-3]
    weights_shape = (*batch, heads, lq, lk)
    weights = call.out(weights_shape, dtype)
    call.emit("layers/attention_weights.j2", {
        "query": cast(query, dtype), "key": cast(key, dtype),
        "depth": Code.of(query, ".shape[-1]"),
        "dtype": dtype, "bias": Code.of(" + ", bias) if bias is not None else "",
        "precision": precision,
    }, [weights], stem="weights")
    if mask is not None:
        masked = call.out(weights_shape, dtype)
        call.emit("layers/attention_mask.j2", {"mask": mask, "weights": weights, "dtype": dtype},
                  [masked], stem="weights")
        weights = masked
    probs = call.out(weights_shape, dtype)
    call.emit("layers/attention_softmax.j2", {
        "weights": weights, "cast": f".astype(jnp.{dtype})" if dtype != "float32" else ""},
        [probs], stem="weights")
    if dropout is not None:
        rng, rate, broadcast = dropout
        shape = (1,) * (key.ndim - 2) + weights_shape[-2:] if broadcast else weights_shape
        shape_code = Code.of(f"{literal((1,) * (key.ndim - 2))} + ", probs, ".shape[-2:]") \
            if broadcast else Code.of(probs, ".shape")
        dropped = call.out(weights_shape, dtype)
        call.emit("layers/attention_dropout.j2", {
            "weights": probs, "rng": rng, "keep_prob": literal(1.0 - rate), "shape": shape_code,
            "dtype": dtype}, [dropped], stem="weights", temps={"keep": Tensor(shape, "bool")})
        probs = dropped
    out = call.out((*batch, lq, heads, value.shape[-1]), dtype)
    call.emit("layers/attention_values.j2", {"weights": probs, "value": cast(value, dtype),
                                             "precision": precision}, [out], stem="attended")
    return out


def cast(t: Tensor, dtype: str) -> Code:
    return Code((t,)) if t.dtype == dtype else Code.of(t, f".astype(jnp.{dtype})")


def _check_qkv(call: FnCall, query: Tensor, key: Tensor, value: Tensor) -> None:
    if not (query.ndim == key.ndim == value.ndim) or query.ndim < 3:
        raise call.fail(f"{call.written}: query, key and value must have one rank >= 3 "
                        f"([batch..., length, heads, depth]), got {query.describe()}, "
                        f"{key.describe()} and {value.describe()}", "AOT210")
    if not (query.shape[:-3] == key.shape[:-3] == value.shape[:-3]) or \
            not (query.shape[-2] == key.shape[-2] == value.shape[-2]) or \
            query.shape[-1] != key.shape[-1] or key.shape[-3] != value.shape[-3]:
        raise call.fail(f"{call.written}: query {query.describe()}, key {key.describe()} and "
                        f"value {value.describe()} must agree on batch dims and heads, query "
                        "and key on depth, key and value on length", "AOT210")


def dot_product_attention(call: FnCall) -> Tensor:
    query = call.tensor("query", floating=True)
    key = call.tensor("key", floating=True)
    value = call.tensor("value", floating=True)
    layout = _function_layout(call, query, key, value)
    like = query
    if layout is not None:
        query, key, value = (layout.heads_in(t, n) for t, n in
                             ((query, "query"), (key, "key"), (value, "value")))
    _check_qkv(call, query, key, value)
    target = (*query.shape[:-3], query.shape[-2], query.shape[-3], key.shape[-3])
    if layout is not None and call.args["bias"] is not None:
        bias: Code | None = _joint_bias(call, layout, like, key_like=call.args["key"],
                                        target=target)
    else:
        bias = _optional(call, "bias", target)
    mask = _optional(call, "mask", target)
    dropout = None
    if call.static("dropout_rate", float, int) > 0 and not call.bool("deterministic"):
        dropout = (_function_key(call), float(call.args["dropout_rate"]),
                   call.bool("broadcast_dropout"))
    out = attend(call, query, key, value, dtype=call.dtype("dtype"), bias=bias, mask=mask,
                 dropout=dropout, precision=precision_code(call))
    return out if layout is None else layout.heads_out(out, like)


def _function_layout(call: FnCall, query: Tensor, key: Tensor, value: Tensor) -> _Layout | None:
    """Old flax.nn's `axis=` of `dot_product_attention`, as a layout (None: nothing moves).

    The arrays are `[batch, dims..., heads, depth]`; attention runs jointly over the
    `axis` dims (None: all of them, old flax.nn's default), every other dim is a batch
    dim.  Linen's `mask=`, and arrays of rank 3, keep Linen's layout: the dim before
    the heads.
    """
    axis = call.args["axis"]
    n = query.ndim
    if not (query.ndim == key.ndim == value.ndim) or n < 3:
        return None  # _check_qkv reports it
    if axis is None:
        if n == 3 or call.args["mask"] is not None:
            return None
        axes = tuple(range(1, n - 2))
    else:
        one = isinstance(axis, int) and not isinstance(axis, bool)
        axes = (axis,) if one else axis
        if not isinstance(axes, (tuple, list)) or not axes or not all(
                isinstance(a, int) and not isinstance(a, bool) for a in axes):
            raise call.fail(f"{call.written}: axis must be an int or a tuple of ints, got "
                            f"{describe_value(axis)}", "AOT203")
        axes = tuple(a + n if a < 0 else a for a in axes)
        if n < 4 or any(not 1 <= a <= n - 3 for a in axes) or len(set(axes)) != len(axes):
            raise call.fail(f"{call.written}: axis={axis!r} must name distinct axes between "
                            f"the batch axis and the heads of rank-{n} arrays [batch, dims..., "
                            "heads, depth]" + (f" (1 to {n - 3})" if n >= 4 else ""), "AOT203")
        if call.args["mask"] is not None and axes != (n - 3,):
            raise call.fail(f"{call.written}: mask= attends over the axis before the heads, "
                            f"got axis={axis!r}", "AOT203",
                            hint="pass the mask as bias= (0 where kept, a large negative "
                                 "number where masked) with several attention axes")
    layout = _Layout(call, n - 1, axes)
    if layout.identity:
        return None
    dims = (0, *layout.other, n - 2)
    for name, t in (("key", key), ("value", value)):
        if any(t.shape[a] != query.shape[a] for a in dims):
            raise call.fail(f"{call.written}: query {query.describe()} and {name} "
                            f"{t.describe()} must agree on the batch axis, the heads and the "
                            f"axes attention does not run over (axis={axes})", "AOT210")
    if key.shape[:-1] != value.shape[:-1]:
        raise call.fail(f"{call.written}: key {key.describe()} and value {value.describe()} "
                        "must agree on every axis but the last", "AOT210")
    return layout


def _joint_bias(call: FnCall, layout: _Layout, query: Tensor, key_like: Any,
                target: tuple[int, ...]) -> Code:
    """`bias=` for attention over several axes: shaped as old flax.nn's weights
    `[batch, other dims..., heads, query dims..., key dims...]` (numpy broadcasting),
    broadcast to that shape and flattened into the attention layout."""
    key: Tensor = key_like
    heads = query.shape[-2]
    weights = (*(query.shape[a] for a in layout.order[:len(layout.order) - len(layout.axes)]),
               heads, *(query.shape[a] for a in layout.axes),
               *(key.shape[a] for a in layout.axes))
    bias = call.tensor("bias")
    try:
        ok = sh.broadcast_shapes(bias.shape, weights) == weights
    except sh.ShapeError:
        ok = False
    if not ok:
        raise call.fail(f"{call.written}: bias {bias.describe()} does not broadcast to the "
                        f"attention weights' shape {weights} (batch, other dims..., heads, "
                        "query dims..., key dims...)", "AOT210")
    out = call.out(target, bias.dtype, bias.weak)
    call.emit("ops/call.j2", {"call": Code.of("jnp.broadcast_to(", bias, f", {weights!r})"
                                              f".reshape({target!r})")}, [out], stem="bias")
    return Code((out,))


def _function_key(call: FnCall) -> Code:
    """`dropout_rng=`, or as old flax.nn: `nn.make_rng()` of the module calling it."""
    given = _given_key(call, "draw one as nn.make_rng() would")
    if given is not None:
        return given
    if call.make_rng is None:
        raise call.fail(f"{call.written}: dropout outside a module needs dropout_rng=",
                        "AOT203", hint="pass dropout_rng=key, or deterministic=True")
    return Code((call.make_rng(),))


def _given_key(call: FnCall, otherwise: str) -> Code | None:
    """`dropout_rng=` as given, checked to be a key (None when not given); `otherwise`:
    what leaving it out does, for the hint."""
    key = call.args["dropout_rng"]
    if key is None:
        return None
    if not isinstance(key, RngKey):
        raise call.fail(f"{call.written}: dropout_rng must be a random key, got "
                        f"{describe_value(key)}", "AOT202",
                        hint=f"pass a key from nn.make_rng(), or leave dropout_rng out to "
                             f"{otherwise}")
    return Code((key,))


def _optional(call: FnCall, name: str, target: tuple[int, ...]) -> Code | None:
    if call.args[name] is None:
        return None
    return _full_rank(call, call.tensor(name), target, name)


# old flax.nn's order (dtype, bias, axis after the arrays), then Linen's `mask=`
_register("dot_product_attention", "function",
          "query, key, value, dtype=None, bias=None, axis=None, broadcast_dropout=True, "
          "dropout_rng=None, dropout_rate=0.0, deterministic=False, precision=None, mask=None",
          dot_product_attention, "layers/attention_weights.j2",
          "attention of [batch, dims..., heads, depth] arrays over the axis dims jointly "
          "(old flax.nn; None: all dims between batch and heads), Linen's mask= too; "
          "dropout without dropout_rng= draws nn.make_rng()")


# ------------------------------------------------------------- masks


def make_causal_mask(call: FnCall) -> Tensor:
    x = call.tensor("x")
    if x.ndim < 1:
        raise call.fail(f"{call.written} expects an array [batch..., length], got "
                        f"{x.describe()}", "AOT210")
    extra = call.int("extra_batch_dims", minimum=0)
    dtype = call.dtype("dtype", allow_none=False)
    n = x.shape[-1]
    shape = (1,) * extra + x.shape[:-1] + (1, n, n)
    out = call.out(shape, dtype)
    call.emit("layers/causal_mask.j2", {"n": str(n), "dtype": f"jnp.{dtype}",
                                        "shape": repr(shape)},
              [out], stem="mask")
    return out


def make_attention_mask(call: FnCall) -> Tensor:
    q = call.tensor("query_input")
    k = call.tensor("key_input")
    fn = call.args["pairwise_fn"]
    if not isinstance(fn, OpRef) or fn.entry.code is None or fn.entry.kind != "function":
        raise call.fail(f"{call.written}: pairwise_fn must be a jnp function such as "
                        "jnp.multiply or jnp.greater_equal", "AOT203")
    if q.ndim != k.ndim or q.ndim < 1:
        raise call.fail(f"{call.written}: query_input and key_input must have one rank "
                        f"([batch..., length]), got {q.describe()} and {k.describe()}", "AOT210")
    try:
        batch = sh.broadcast_shapes(q.shape[:-1], k.shape[:-1])
    except sh.ShapeError as e:
        raise call.fail(f"{call.written}: {e}", "AOT210") from None
    extra = call.int("extra_batch_dims", minimum=0)
    dtype = call.dtype("dtype", allow_none=False)
    shape = (1,) * extra + batch + (1, q.shape[-1], k.shape[-1])
    out = call.out(shape, dtype)
    call.emit("layers/attention_mask_pairwise.j2", {
        "fn": fn.entry.code, "q": q, "k": k, "shape": repr(shape), "dtype": f"jnp.{dtype}"},
        [out], stem="mask")
    return out


_register("make_causal_mask", "function", "x, extra_batch_dims=0, dtype=float32",
          make_causal_mask, "layers/causal_mask.j2",
          "causal mask [batch..., 1, len, len] for self-attention (Linen)")
_register("make_attention_mask", "function",
          "query_input, key_input, pairwise_fn=multiply, extra_batch_dims=0, dtype=float32",
          make_attention_mask, "layers/attention_mask_pairwise.j2",
          "pairwise mask [batch..., 1, len_q, len_kv] (Linen)")


# ------------------------------------------------------------- old flax.nn's mask helpers


def _old_attention_axes(call: FnCall, ndim: int, what: str) -> tuple[int, ...]:
    """`attention_axis` of old flax.nn's mask helpers, for `[batch, dims..., heads, depth]`
    shapes of rank `ndim` (None: every dim between batch and heads)."""
    axis = call.args["attention_axis"]
    if axis is None:
        return tuple(range(1, ndim - 2))
    if not isinstance(axis, tuple) or not all(
            isinstance(a, int) and not isinstance(a, bool) for a in axis):
        raise call.fail(f"{call.written}: attention_axis must be a tuple of ints, got "
                        f"{describe_value(axis)}", "AOT203")
    if any(not (ndim >= 3 and 1 <= a < ndim - 2) for a in axis):
        raise call.fail(f"{call.written}: attention_axis={axis!r} must be between the batch "
                        f"axis and the last two axes of the rank-{ndim} {what}", "AOT203")
    return axis


def make_padding_mask(call: FnCall) -> Tensor:
    """Old flax.nn's `make_padding_mask`: `[batch, 1, query dims..., key dims...]` float32,
    the outer product (or, for segments, the equality) of the two per-position masks."""
    q = call.tensor("padding_mask_query")
    k = call.tensor("padding_mask_key")
    q_shape, k_shape = call.ints("query_shape"), call.ints("key_shape")
    if len(q_shape) != len(k_shape) or q_shape[0] != k_shape[0]:
        raise call.fail(f"{call.written}: query_shape {q_shape} and key_shape {k_shape} must "
                        "have one rank and one batch size", "AOT210")
    axes = _old_attention_axes(call, len(k_shape), "key_shape")
    final = (q_shape[0], 1, *(q_shape[a] for a in axes), *(k_shape[a] for a in axes))
    # the key mask's axes reversed after the batch axis: [batch, 1, ..., key positions]
    perm = (0, *range(k.ndim, 0, -1))
    k_t = tuple((*k.shape, 1)[p] for p in perm)
    try:
        product = sh.broadcast_shapes((*q.shape, 1), k_t)
    except sh.ShapeError as e:
        raise call.fail(f"{call.written}: the masks {q.describe()} and {k.describe()} do not "
                        f"combine: {e}", "AOT210") from None
    if math.prod(product) != math.prod(final):
        raise call.fail(f"{call.written}: the masks {q.describe()} and {k.describe()} give "
                        f"{math.prod(product)} entries, not the {math.prod(final)} of the "
                        f"attention mask {final} that query_shape and key_shape make",
                        "AOT210")
    fn = "jnp.equal" if call.bool("segmentation_mask") else "jnp.multiply"
    out = call.out(final, "float32")
    call.emit("ops/call.j2", {"call": Code.of(
        f"{fn}(", q, "[..., None], jnp.transpose(", k, f"[..., None], {perm!r}))"
        f".reshape({final!r}).astype(jnp.float32)")}, [out], stem="mask")
    return out


def old_causal_mask(call: FnCall) -> Tensor:
    """Old flax.nn's `_make_causal_mask(key, attention_axis, self_mask)`: bool
    `[1..., key dims..., key dims...]`, position i seeing positions <= i (< i with
    self_mask) of the attention dims flattened."""
    key = call.tensor("key")
    axes = _old_attention_axes(call, key.ndim, "key")
    dims = tuple(key.shape[a] for a in axes)
    n = math.prod(dims)
    final = (1,) * (key.ndim - len(axes) - 1) + dims + dims
    k = -1 if call.bool("self_mask") else 0
    shift = " - 1" if k else ""
    out = call.out(final, "bool")
    call.emit("ops/call.j2", {"call": Code(
        (f"(jnp.arange({n})[:, None]{shift} >= jnp.arange({n})[None, :])"
         f".reshape({final!r})",))}, [out], stem="mask")
    return out


def _register_old(name: str, sig: str, rule: Any, doc: str) -> Entry:
    return REGISTRY.add(Entry(name, ("nn.attention",), "function",
                              Signature.parse(sig, _DEFAULTS), rule, "ops/call.j2", doc=doc))


_register_old("make_padding_mask",
              "padding_mask_query, padding_mask_key, query_shape, key_shape, "
              "attention_axis=None, segmentation_mask=False", make_padding_mask,
              "old flax.nn's padding (or segmentation) mask [batch, 1, query dims..., "
              "key dims...], float32")
_register_old("_make_causal_mask", "key, attention_axis=None, self_mask=False",
              old_causal_mask, "old flax.nn's causal mask [1..., key dims..., key dims...], "
              "bool")


# ------------------------------------------------------------- the layers


def _self_attention(call: LayerCall) -> bool:
    """Old flax.nn's `inputs_kv is inputs_q` (None is the queries too): the one array."""
    kv = call.args.get("inputs_kv")
    return kv is None or kv is call.args["inputs_q"]


def _custom_attention_fn(call: LayerCall) -> Any:
    """`attention_fn=` when it is not `nn.dot_product_attention` (None when it is, or not
    given): a function of the model file, called as old flax.nn called it."""
    fn = call.args["attention_fn"]
    if fn is None or (isinstance(fn, OpRef) and fn.entry is _DOT_PRODUCT):
        return None
    if isinstance(fn, OpRef) or call.call_function is None:
        raise call.fail(f"{call.written}: attention_fn must be nn.dot_product_attention or "
                        f"a function of the model file, got {describe_value(fn)}", "AOT203")
    for name in ("cache", "mask"):
        if call.args[name] is not None:
            raise call.fail(f"{call.written}: {name}= is not supported with attention_fn=",
                            "AOT203", hint="pass padding_mask= / causal_mask=, which become "
                            "the function's bias as in old flax.nn")
    if call.bool("decode"):
        raise call.fail(f"{call.written}: decode=True is not supported with attention_fn=",
                        "AOT203")
    return fn


def _check_args(call: LayerCall) -> Any:
    """The cache, if any; rejects the arguments that cannot apply."""
    cache = call.args["cache"]
    if cache is None:
        return None
    if not isinstance(cache, AttentionCache):
        raise call.fail(f"{call.written}: cache= must be an nn.attention.Cache, got "
                        f"{describe_value(cache)}", "AOT203")
    if cache.shape is None:
        raise call.fail(f"{call.written}: this nn.attention.Cache has no shape", "AOT372",
                        hint="give the decode target nn.attention.Cache().initialize_cache("
                             "(batch, max_length))")
    if not call.bool("causal_mask"):
        raise call.fail(f"{call.written}: cache= needs causal_mask=True (old flax.nn caches "
                        "causal self-attention only)", "AOT372")
    if call.bool("decode"):
        raise call.fail(f"{call.written}: pass cache= or decode=True, not both", "AOT372")
    return cache


def _attention_axes(call: LayerCall, ndim: int, linen_layout: bool) -> tuple[int, ...]:
    """Axes of the inputs attention runs over (old flax.nn's `attention_axis`).

    None means every axis between the batch axis and the features, as old flax.nn
    did (the length axis of `[batch, length, features]`); with Linen's `mask=` or
    `decode=True`, Linen's layout: the axis before the features.
    """
    axis = call.args["attention_axis"]
    if axis is None:
        if linen_layout or ndim < 3:
            return (ndim - 2,)
        return tuple(range(1, ndim - 1))
    axes = (axis,) if isinstance(axis, int) and not isinstance(axis, bool) else axis
    if not isinstance(axes, (tuple, list)) or not axes or not all(
            isinstance(a, int) and not isinstance(a, bool) for a in axes):
        raise call.fail(f"{call.written}: attention_axis must be an int or a tuple of ints, "
                        f"got {describe_value(axis)}", "AOT203")
    out = tuple(a + ndim if a < 0 else a for a in axes)
    low = 1 if ndim >= 3 else 0
    if any(not low <= a <= ndim - 2 for a in out) or len(set(out)) != len(out):
        raise call.fail(f"{call.written}: attention_axis={axis!r} must name distinct axes "
                        f"between the batch axis and the features of a rank-{ndim} input "
                        f"({low} to {ndim - 2})", "AOT203")
    if linen_layout and out != (ndim - 2,):
        raise call.fail(f"{call.written}: mask= and decode=True attend over the axis before "
                        f"the features, got attention_axis={axis!r}", "AOT203",
                        hint="use padding_mask= / causal_mask= with several attention axes")
    return out


class _Layout:
    """Old flax.nn's attention axes as Linen's `[batch..., length, heads, depth]` layout.

    Attention runs over `axes` of the inputs jointly (flattened in the order given);
    every other axis between batch and features becomes a batch axis.  With the
    single axis before the features nothing moves.
    """

    def __init__(self, call: FnCall, ndim: int, axes: tuple[int, ...]):
        self.call, self.ndim, self.axes = call, ndim, axes
        self.other = tuple(a for a in range(1, ndim - 1) if a not in axes) if ndim >= 3 \
            else ()
        lead = (0,) if ndim >= 3 else ()
        #: Order of the input's non-feature axes: batch, other axes, attention axes.
        self.order = (*lead, *self.other, *axes)
        self.identity = axes == (ndim - 2,)

    def batch(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Batch dims of the attention layout, for an input of `shape`."""
        if self.identity:
            return shape[:-2]
        return tuple(shape[a] for a in self.order[:len(self.order) - len(self.axes)])

    def length(self, shape: tuple[int, ...]) -> int:
        return math.prod(shape[a] for a in self.axes)

    def _move(self, t: Tensor, perm: tuple[int, ...], shape: tuple[int, ...],
              stem: str) -> Tensor:
        code: Code = Code((t,))
        if perm != tuple(range(t.ndim)):
            code = Code.of("jnp.transpose(", t, f", {perm!r})")
        if tuple(t.shape[p] for p in perm) != shape:
            code = Code.of(code, f".reshape({shape!r})")
        if code.parts == (t,):
            return t
        out = self.call.out(shape, t.dtype, t.weak)
        self.call.emit("ops/call.j2", {"call": code}, [out], stem=stem)
        return out

    def heads_in(self, t: Tensor, stem: str) -> Tensor:
        """A projection `[batch, *dims, heads, depth]` in the attention layout."""
        if self.identity:
            return t
        perm = (*self.order, self.ndim - 1, self.ndim)
        shape = (*self.batch(t.shape), self.length(t.shape), *t.shape[-2:])
        return self._move(t, perm, shape, stem)

    def heads_out(self, t: Tensor, like: Tensor) -> Tensor:
        """The attention result back in the layout of the query (projection) `like`."""
        if self.identity:
            return t
        grouped = (*(like.shape[a] for a in self.order), *t.shape[-2:])
        moved = self._move(t, tuple(range(t.ndim)), grouped, "attended")
        inverse = tuple(sorted(range(len(self.order)), key=lambda i: self.order[i]))
        # the values' depth, which may differ from the query's
        return self._move(moved, (*inverse, self.ndim - 1, self.ndim),
                          (*like.shape[:-1], t.shape[-1]), "attended")

    def positions(self, t: Tensor, dims: tuple[int, ...], name: str) -> Tensor:
        """A per-token mask `[batch, *dims]` (or with a trailing 1) as `[batch..., length]`."""
        call = self.call
        if t.shape not in (dims, (*dims, 1)):
            raise call.fail(f"{call.written}: {name} must have shape {dims} (or with a "
                            f"trailing 1), got {t.describe()}", "AOT210")
        if self.identity:
            return t
        if t.shape != dims:
            t = self._move(t, tuple(range(t.ndim - 1)) + (t.ndim - 1,), dims, name)
        shape = (*self.batch((*dims, 1)), self.length((*dims, 1)))
        return self._move(t, self.order, shape, name)


def _mask_components(call: LayerCall, layout: _Layout, target: tuple[int, ...],
                     q_dims: tuple[int, ...], k_dims: tuple[int, ...], lq: int, lk: int,
                     decoding: bool, cached: bool,
                     lengths: tuple[Code, Code]) -> list[tuple[Code, tuple[int, ...]]]:
    """Full-rank mask codes and their shapes: user mask, causal, padding, segmentation.

    As in old flax.nn (its last version, which attended across inputs of other lengths):
    in self-attention either padding mask stands for the other, across two inputs a side
    without one attends everywhere; `key_segmentation` defaults to `segmentation`; with a
    cache (one new query position), the keys' padding is the cache's fill.
    """
    batch = target[:-3]
    parts: list[tuple[Code, tuple[int, ...]]] = []
    if call.args["mask"] is not None:
        m = call.tensor("mask")
        shape = (1,) * (len(target) - m.ndim) + m.shape
        parts.append((_full_rank(call, m, target, "mask"), shape))
    if call.bool("causal_mask") and not decoding:  # decoding: the cache mask is causal
        if lq != lk:
            raise call.fail(f"{call.written}: causal_mask needs queries and keys of one "
                            f"length, got {lq} and {lk}", "AOT210")
        shape = (1,) * (len(target) - 2) + (lq, lk)
        q_len, k_len = lengths
        ones = "1, " * (len(target) - 2)
        parts.append((Code.of("jnp.tril(jnp.ones((", q_len, ", ", k_len, "), dtype=jnp.bool_))"
                              f".reshape(({ones}", q_len, ", ", k_len, "))"), shape))
    self_attention = _self_attention(call)
    for name, key_name, op in (("padding_mask", "key_padding_mask", " * "),
                               ("segmentation", "key_segmentation", " == ")):
        q_name: str | None = name if call.args[name] is not None else None
        k_name: str | None = key_name if call.args[key_name] is not None else None
        if q_name is None and (k_name is None or name == "segmentation" or cached):
            continue  # a key segmentation alone means nothing; with a cache, keys are its fill
        if cached and name == "segmentation":
            raise call.fail(f"{call.written}: segmentation is not supported with cache=",
                            "AOT372", hint="decode one sequence per batch row")
        if self_attention or name == "segmentation":  # one side stands for the other
            q_name, k_name = q_name or k_name, k_name or q_name
        q_code = k_code = None  # (a side without a mask attends everywhere)
        if q_name is not None:
            q = layout.positions(call.tensor(q_name), q_dims, q_name)
            q_code = Code.of(q, f".reshape({(*batch, 1, lq, 1)!r})")
        if cached:  # the cache mask covers the keys
            assert q_code is not None
            parts.append((Code.of("(", q_code, " > 0)"), (*batch, 1, lq, 1)))
            continue
        if k_name is not None:
            k = layout.positions(call.tensor(k_name), k_dims, k_name)
            k_code = Code.of(k, f".reshape({(*batch, 1, 1, lk)!r})")
        if q_code is None or k_code is None:
            one = q_code if k_code is None else k_code
            assert one is not None  # (a side is given: see above)
            shape = (*batch, 1, lq, 1) if k_code is None else (*batch, 1, 1, lk)
            parts.append((Code.of("(", one, " > 0)"), shape))
            continue
        pair = Code.of("(", q_code, op, k_code, ")")
        parts.append((Code.of(pair, " > 0") if op == " * " else pair, (*batch, 1, lq, lk)))
    return parts


def _combine(call: LayerCall, parts: list[tuple[Code, tuple[int, ...]]]) -> Code | None:
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0][0]  # used inline by jnp.where, whatever its dtype
    code = parts[0][0]
    for p, _ in parts[1:]:
        code = Code.of("jnp.logical_and(", code, ", ", p, ")")
    mask = call.out(sh.broadcast_shapes(*[shape for _, shape in parts]), "bool")
    call.emit("ops/call.j2", {"call": code}, [mask], stem="mask")
    return Code((mask,))


def _decode(call: LayerCall, key: Tensor, value: Tensor, lq: int,
            max_length: int) -> tuple[Tensor, Tensor, Tensor]:
    """Write key/value into Linen's cache; return the full keys, values and cache mask."""
    batch, heads, depth = key.shape[:-3], key.shape[-2], key.shape[-1]
    if max_length < lq:
        raise call.fail(f"{call.written}: max_length={max_length} is shorter than the "
                        f"{lq} positions of this call", "AOT210")
    shape = (*batch, max_length, heads, depth)
    codes = {}
    for name, t in (("cached_key", key), ("cached_value", value)):
        codes[name] = call.state("cache", name, shape, t.dtype, inits.ZEROS)
    index = call.state("cache", "cache_index", (), "int32", inits.ZEROS)
    indices = Code.of("(", "0, " * len(batch), index, ", 0, 0)")
    full = []
    for name, t in (("cached_key", key), ("cached_value", value)):
        new = call.out(shape, t.dtype)
        call.emit("layers/attention_cache.j2", {"cache": codes[name], "update": t,
                                                "indices": indices}, [new], stem=name)
        full.append(new)
    mask = call.out((1,) * (len(batch) + 1) + (lq, max_length), "bool")
    q_len, length = Code.of(key, ".shape[-3]"), Code.of(full[0], ".shape[-3]")
    call.emit("layers/attention_cache_mask.j2", {
        "length": length, "lq": q_len, "index": index,
        "shape": Code.of("(" + "1, " * (len(batch) + 1), q_len, ", ", length, ")")},
        [mask], stem="cache_mask")
    new_index = call.out((), "int32")
    call.emit("ops/call.j2", {"call": Code.of(index, " + ", q_len)}, [new_index],
              stem="cache_index")
    call.set_state("cache", "cached_key", full[0])
    call.set_state("cache", "cached_value", full[1])
    call.set_state("cache", "cache_index", new_index)
    return full[0], full[1], mask


def _cache_length(call: LayerCall, cache: AttentionCache, batch: tuple[int, ...],
                  lq: int) -> int:
    """The cache's length for queries of batch dims `batch` (its shape is (batch..., L))."""
    shape = cache.shape or ()
    if tuple(shape[:-1]) != tuple(batch) or len(shape) < 1:
        raise call.fail(f"{call.written}: the cache was initialized for (batch..., length) = "
                        f"{shape}, but this call has batch dims {batch}", "AOT372",
                        hint=f"initialize_cache({(*batch, shape[-1] if shape else 1)!r})")
    return shape[-1]


def _old_bias(call: LayerCall, query: Tensor, key: Tensor, axes: tuple[int, ...],
              dtype: str) -> Tensor | None:
    """Old flax.nn's attention bias for a custom `attention_fn`: its causal, padding and
    segmentation masks (`_make_causal_mask`, `make_padding_mask`) combined, as 0 where
    attending and -1e10 elsewhere (`lax.select(mask > 0, 0, -1e10)` in `dtype`)."""
    def with_args(**args: Any) -> FnCall:
        return dataclasses.replace(call, args=args)

    parts = []
    if call.bool("causal_mask"):
        parts.append(old_causal_mask(with_args(key=key, attention_axis=axes, self_mask=False)))
    self_attention = _self_attention(call)

    def everywhere(x: Tensor) -> Tensor:  # old flax.nn's `jnp.full(shape, True)` of a side
        shape = (x.shape[0], *(x.shape[a] for a in axes))
        ones = call.out(shape, "float32")
        call.emit("ops/call.j2", {"call": Code((f"jnp.ones({shape!r}, jnp.float32)",))},
                  [ones], stem="ones")
        return ones

    for name, key_name in (("padding_mask", "key_padding_mask"),
                           ("segmentation", "key_segmentation")):
        q_mask, k_mask = call.args[name], call.args[key_name]
        if q_mask is None and (k_mask is None or name == "segmentation"):
            continue
        if self_attention or name == "segmentation":
            q_mask, k_mask = (q_mask if q_mask is not None else k_mask,
                              k_mask if k_mask is not None else q_mask)
        else:
            q_mask = q_mask if q_mask is not None else everywhere(call.args["inputs_q"])
            k_mask = k_mask if k_mask is not None else everywhere(call.args["inputs_kv"])
        parts.append(make_padding_mask(with_args(
            padding_mask_query=q_mask, padding_mask_key=k_mask, query_shape=query.shape,
            key_shape=key.shape, attention_axis=axes,
            segmentation_mask=name == "segmentation")))
    if not parts:
        return None
    code = Code((parts[0],))
    for p in parts[1:]:
        code = Code.of("jnp.logical_and(", code, ", ", p, ")")
    shape = sh.broadcast_shapes(*[p.shape for p in parts])
    bias = call.out(shape, dtype)
    call.emit("ops/call.j2", {"call": Code.of(
        "jnp.where(", code, f" > 0, 0.0, -1e10).astype(jnp.{dtype})")}, [bias], stem="bias")
    return bias


def _call_attention_fn(call: LayerCall, fn: Any, proj: dict[str, Tensor],
                       axes: tuple[int, ...]) -> Tensor:
    """`attention_fn(query, key, value, dtype=, axis=, bias=, ...)` with the projections
    `[batch, dims..., heads, depth]` and the keywords old flax.nn's attention passed."""
    query, key = proj["query"], proj["key"]
    dtype = call.args["dtype"] if call.args["dtype"] is not None else DType(query.dtype)
    assert call.call_function is not None
    x = call.call_function(fn, [query, key, proj["value"]], {
        "dtype": dtype, "axis": axes, "bias": _old_bias(call, query, key, axes, query.dtype),
        "precision": call.args["precision"], "dropout_rng": call.args["dropout_rng"],
        "dropout_rate": call.args["dropout_rate"],
        "broadcast_dropout": call.args["broadcast_dropout"],
        "deterministic": call.args["deterministic"]})
    if not isinstance(x, Tensor) or x.ndim != query.ndim or x.shape[:-1] != query.shape[:-1]:
        dims = ", ".join(str(d) for d in query.shape[:-1])
        raise call.fail(f"{call.written}: attention_fn must return an array [{dims}, depth], "
                        f"the query's shape up to its depth, got {describe_value(x)}", "AOT210")
    return x


def multi_head_attention(call: LayerCall) -> Tensor:
    custom = _custom_attention_fn(call)
    cache = _check_args(call)
    inputs_q = call.tensor("inputs_q", floating=True)
    inputs_kv = call.tensor("inputs_kv", floating=True) \
        if call.args.get("inputs_kv") is not None else inputs_q
    if inputs_q.ndim < 2 or inputs_q.ndim != inputs_kv.ndim or \
            inputs_q.shape[:-2] != inputs_kv.shape[:-2]:
        raise call.fail(f"{call.written}: inputs_q and inputs_kv must be [batch..., length, "
                        f"features] with the same batch dims, got {inputs_q.describe()} and "
                        f"{inputs_kv.describe()}", "AOT210")
    decode = call.bool("decode") or cache is not None
    axes = _attention_axes(call, inputs_q.ndim,
                           linen_layout=decode or call.args["mask"] is not None)
    layout = _Layout(call, inputs_q.ndim, axes)
    if not layout.identity and any(inputs_q.shape[a] != inputs_kv.shape[a]
                                   for a in layout.other):
        raise call.fail(f"{call.written}: inputs_q {inputs_q.describe()} and inputs_kv "
                        f"{inputs_kv.describe()} must agree on the axes attention does not "
                        f"run over (attention_axis={axes})", "AOT210")
    heads = call.int("num_heads", minimum=1)
    features = _features_or(call, "out_features", inputs_q.shape[-1])
    qkv = _features_or(call, "qkv_features", inputs_q.shape[-1])
    if qkv % heads:
        raise call.fail(f"{call.written}: qkv_features={qkv} must be divisible by "
                        f"num_heads={heads}", "AOT203")
    dtype, pdt = call.dtype("dtype"), call.dtype("param_dtype", allow_none=False)
    kinit, binit = call.initializer("kernel_init"), call.initializer("bias_init")
    use_bias, precision = call.bool("bias"), precision_code(call)
    proj = {}
    for name, x in (("query", inputs_q), ("key", inputs_kv), ("value", inputs_kv)):
        proj[name] = dense_general(sub_call(call, name, "DenseGeneral"), x,
                                   (heads, qkv // heads), (x.ndim - 1,), use_bias=use_bias,
                                   dtype=dtype, param_dtype=pdt, kernel_init=kinit,
                                   bias_init=binit, precision=precision, stem=name)
    if custom is not None:
        x = _call_attention_fn(call, custom, proj, axes)
        return _out_projection(call, x, features, use_bias, dtype, pdt, kinit, binit,
                               precision)
    query, key, value = (layout.heads_in(proj[n], n) for n in ("query", "key", "value"))
    batch, lq, lk = query.shape[:-3], query.shape[-3], key.shape[-3]
    parts: list[tuple[Code, tuple[int, ...]]] = []
    if decode:
        if lq != lk:
            raise call.fail(f"{call.written}: decoding needs queries and keys/values of one "
                            f"length, got {lq} and {lk}", "AOT210")
        if cache is not None:
            max_length = _cache_length(call, cache, batch, lq)
        elif call.args["max_length"] is None:
            max_length = lk
        else:
            max_length = call.int("max_length", minimum=1)
        key, value, cache_mask = _decode(call, key, value, lq, max_length)
        lk = max_length
        parts.append((Code((cache_mask,)), cache_mask.shape))
        if call.bool("decode") and any(call.args[n] is not None
                                       for n in ("padding_mask", "segmentation")):
            raise call.fail(f"{call.written}: padding_mask and segmentation are not supported "
                            "with decode=True", "AOT203",
                            hint="pass mask= to combine a mask with the cache")
    target = (*batch, heads, lq, lk)
    lengths = (Code.of(query, ".shape[-3]"), Code.of(key, ".shape[-3]"))
    parts = _mask_components(call, layout, target, inputs_q.shape[:-1],
                             inputs_kv.shape[:-1], lq, lk, decode, cache is not None,
                             lengths) + parts
    mask = _combine(call, parts)
    dropout = None
    rate = call.static("dropout_rate", float, int)
    if rate > 0 and not call.bool("deterministic"):
        dropout = (_dropout_key(call), float(rate), call.bool("broadcast_dropout"))
    x = attend(call, query, key, value, dtype=dtype, mask=mask, dropout=dropout,
               precision=precision)
    x = layout.heads_out(x, proj["query"])
    return _out_projection(call, x, features, use_bias, dtype, pdt, kinit, binit, precision)


def _out_projection(call: LayerCall, x: Tensor, features: int, use_bias: bool, dtype: Any,
                    pdt: Any, kinit: Any, binit: Any, precision: Any) -> Tensor:
    """The `out` DenseGeneral over the heads and depth of the attended values."""
    out_kinit = call.initializer("out_kernel_init") if call.args["out_kernel_init"] is not None \
        else kinit
    out_binit = call.initializer("out_bias_init") if call.args["out_bias_init"] is not None \
        else binit
    return dense_general(sub_call(call, "out", "DenseGeneral"), x, (features,),
                         (x.ndim - 2, x.ndim - 1), use_bias=use_bias, dtype=dtype,
                         param_dtype=pdt, kernel_init=out_kinit, bias_init=out_binit,
                         precision=precision, stem="out")


def _dropout_key(call: LayerCall) -> Code:
    """`dropout_rng=` as given (a key), else the layer's key from the target's rng."""
    given = _given_key(call, "use the layer's own")
    return call.rng() if given is None else given


_DOT_PRODUCT = REGISTRY.lookup("nn", "dot_product_attention")

_register("MultiHeadDotProductAttention", "layer", "inputs_q, inputs_kv=None, " + _COMMON,
          multi_head_attention, "layers/attention_weights.j2",
          "multi-head attention: query/key/value kernels (in, heads, head_dim), out kernel "
          "(heads, head_dim, features); cache= (old flax.nn) and decode=True keep Linen's "
          "cache")
_register("SelfAttention", "layer", "inputs_q, " + _COMMON + ", inputs_kv=None",
          multi_head_attention, "layers/attention_weights.j2",
          "MultiHeadDotProductAttention with inputs_kv = inputs_q unless given (Linen names "
          "it SelfAttention_N)")

def _features_or(call: LayerCall, name: str, default: int) -> int:
    """A feature count that may be left out: Linen's `self.qkv_features or
    inputs_q.shape[-1]` (None and 0 give the default); anything else is a count."""
    value = call.args[name]
    if value is None or (type(value) is int and value == 0):
        return default
    return call.int(name, minimum=1)

