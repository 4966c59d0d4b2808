"""Attention: MultiHeadDotProductAttention, SelfAttention, dot_product_attention, masks.

The layers take old `flax.nn` arguments (`inputs_kv`, `causal_mask`,
`padding_mask`, `key_padding_mask`, `segmentation`, `bias`, `dropout_rate` with
`deterministic`) plus Linen's `mask=` and `decode=`, and declare Linen's tree:
`query` / `key` / `value` DenseGeneral kernels `(in, heads, head_dim)` with
biases `(heads, head_dim)`, and `out` with kernel `(heads, head_dim, features)`.

Old-style masks are combined into one boolean mask applied the way Linen
applies `mask=`: `jnp.where(mask, weights, finfo.min)` before the softmax.

Decoding (`decode=True`) keeps Linen's `cache` collection: `cached_key` and
`cached_value` `(*batch, max_length, heads, head_dim)` and `cache_index` ().
A call writes its keys and values at `cache_index` and advances it by the
query length; query position `i` sees cache positions `<= cache_index + i`.
With one query position this is exactly Linen's decode step; with a longer
query (a prefill) it is causal attention over the prefix plus the chunk.
"""

from __future__ import annotations

from typing import Any

from .. import dtypes as dt
from .. import shapes as sh
from ..program import Code, Tensor
from ..values import DType, OpRef
from . import elementwise  # noqa: F401  (registers the functions looked up below)
from . import initializers as inits
from .calls import FnCall, LayerCall
from .linear import dense_general, precision_code, sub_call
from .registry import REGISTRY, Entry, Signature

_DEFAULTS: dict[str, Any] = {
    "float32": DType("float32"),
    "lecun_normal": inits.LECUN_NORMAL,
    "zeros": inits.ZEROS,
    "multiply": OpRef(REGISTRY.lookup("jnp", "multiply"), "jnp.multiply"),  # type: ignore[arg-type]
}

#: Arguments shared by MultiHeadDotProductAttention and SelfAttention (old order first).
_COMMON = (
    "num_heads, dtype=None, qkv_features=None, out_features=None, attention_axis=None, "
    "causal_mask=False, padding_mask=None, key_padding_mask=None, segmentation=None, "
    "key_segmentation=None, cache=None, broadcast_dropout=True, dropout_rng=None, "
    "dropout_rate=0.0, deterministic=False, precision=None, kernel_init=lecun_normal, "
    "bias_init=zeros, bias=True, param_dtype=float32, mask=None, decode=False, "
    "max_length=None, out_kernel_init=None, out_bias_init=None"
)


def _register(name: str, kind: str, sig: str, rule: Any, template: str, doc: str,
              linen_name: str | None = None) -> Entry:
    return REGISTRY.add(Entry(name, ("nn",), kind, Signature.parse(sig, _DEFAULTS), rule,
                              template, linen_name=linen_name or (name if kind == "layer"
                                                                  else None), doc=doc))


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
    return Code.of(value, f".reshape({(1,) * (len(target) - value.ndim) + value.shape!r})")


def attend(call: FnCall, query: Tensor, key: Tensor, value: Tensor, *, dtype: str | None,
           bias: Code | None = None, mask: Code | None = None,
           dropout: tuple[Code, float, bool] | None = None, precision: str = "") -> Tensor:
    """Linen's `dot_product_attention` on `[batch..., length, heads, depth]` arrays.

    `mask` / `bias` are already full-rank codes; `dropout` is (rng, rate, broadcast).
    """
    if dtype is None:
        dtype = dt.result_type(*[(t.dtype, t.weak) for t in (query, key, value)])[0]
    batch, lq, heads, depth = query.shape[:-3], query.shape[-3], query.shape[-2], query.shape[-1]
    lk = key.shape[-3]
    weights_shape = (*batch, heads, lq, lk)
    weights = call.out(weights_shape, dtype)
    call.emit("layers/attention_weights.j2", {
        "query": cast(query, dtype), "key": cast(key, dtype), "depth": str(depth),
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
        dropped = call.out(weights_shape, dtype)
        call.emit("layers/attention_dropout.j2", {
            "weights": probs, "rng": rng, "keep_prob": repr(1.0 - rate), "shape": repr(shape),
            "dtype": dtype}, [dropped], stem="weights", temps=("keep",))
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
    _check_qkv(call, query, key, value)
    target = (*query.shape[:-3], query.shape[-2], query.shape[-3], key.shape[-3])
    bias = _optional(call, "bias", target)
    mask = _optional(call, "mask", target)
    dropout = None
    if call.static("dropout_rate", float, int) > 0 and not call.bool("deterministic"):
        rng = call.args["dropout_rng"]
        if not isinstance(rng, Tensor):
            raise call.fail(f"{call.written}: dropout needs dropout_rng=", "AOT203",
                            hint="pass deterministic=True, or use nn.MultiHeadDotProductAttention "
                                 "whose dropout draws from the target's rng")
        dropout = (Code((rng,)), float(call.args["dropout_rate"]), call.bool("broadcast_dropout"))
    return attend(call, query, key, value, dtype=call.dtype("dtype"), bias=bias, mask=mask,
                  dropout=dropout, precision=precision_code(call))  # type: ignore[arg-type]


def _optional(call: FnCall, name: str, target: tuple[int, ...]) -> Code | None:
    if call.args[name] is None:
        return None
    return _full_rank(call, call.tensor(name), target, name)


_register("dot_product_attention", "function",
          "query, key, value, bias=None, mask=None, broadcast_dropout=True, dropout_rng=None, "
          "dropout_rate=0.0, deterministic=False, dtype=None, precision=None",
          dot_product_attention, "layers/attention_weights.j2",
          "Linen's dot_product_attention on [batch..., length, heads, depth] arrays")


# ------------------------------------------------------------- masks


def make_causal_mask(call: FnCall) -> Tensor:
    x = call.tensor("x")
    if x.ndim < 1:
        raise call.fail(f"{call.written} expects an array [batch..., length], got "
                        f"{x.describe()}", "AOT210")
    extra = call.int("extra_batch_dims", minimum=0)
    dtype = call.dtype("dtype")
    n = x.shape[-1]
    shape = (1,) * extra + x.shape[:-1] + (1, n, n)
    out = call.out(shape, dtype)  # type: ignore[arg-type]
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
    dtype = call.dtype("dtype")
    shape = (1,) * extra + batch + (1, q.shape[-1], k.shape[-1])
    out = call.out(shape, dtype)  # type: ignore[arg-type]
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


# ------------------------------------------------------------- the layers


def _unsupported(call: LayerCall) -> None:
    if call.args["cache"] is not None:
        raise call.fail(f"{call.written}: cache= (old flax.nn's Cache) is replaced by "
                        "decode=True", "AOT203",
                        hint="decode=True keeps Linen's 'cache' collection as explicit state")
    if call.args["dropout_rng"] is not None:
        raise call.fail(f"{call.written}: dropout_rng= is not supported", "AOT203",
                        hint="attention dropout draws from the target's rng, folded with the "
                             "layer's path")


def _attention_axis(call: LayerCall, ndim: int) -> None:
    axis = call.args["attention_axis"]
    if axis is None:
        return
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    if len(axes) != 1 or axes[0] % ndim != ndim - 2:
        raise call.fail(f"{call.written}: attention is over the length axis (-2) only, got "
                        f"attention_axis={axis!r}", "AOT203",
                        hint="flatten several attention axes into one length axis first")


def _mask_components(call: LayerCall, target: tuple[int, ...], batch: tuple[int, ...],
                     lq: int, lk: int, decode: bool) -> list[tuple[Code, tuple[int, ...]]]:
    """Full-rank mask codes and their shapes: user mask, causal, padding, segmentation."""
    parts: list[tuple[Code, tuple[int, ...]]] = []
    if call.args["mask"] is not None:
        m = call.tensor("mask")
        shape = (1,) * (len(target) - m.ndim) + m.shape
        parts.append((_full_rank(call, m, target, "mask"), shape))
    if call.bool("causal_mask") and not decode:
        if lq != lk:
            raise call.fail(f"{call.written}: causal_mask needs queries and keys of one "
                            f"length, got {lq} and {lk}", "AOT210")
        shape = (1,) * (len(target) - 2) + (lq, lk)
        parts.append((Code((f"jnp.tril(jnp.ones(({lq}, {lk}), dtype=jnp.bool_))"
                            f".reshape({shape!r})",)), shape))
    for name, key_name, op in (("padding_mask", "key_padding_mask", " * "),
                               ("segmentation", "key_segmentation", " == ")):
        if call.args[name] is None:
            if call.args[key_name] is not None:
                raise call.fail(f"{call.written}: {key_name} needs {name}", "AOT203")
            continue
        if decode:
            raise call.fail(f"{call.written}: {name} is not supported with decode=True",
                            "AOT203", hint="pass mask= to combine a mask with the cache")
        q = _per_position(call, name, batch, lq)
        k = _per_position(call, key_name if call.args[key_name] is not None else name,
                          batch, lk)
        pair = Code.of("(", q, f".reshape({(*batch, 1, lq, 1)!r})", op, k,
                       f".reshape({(*batch, 1, 1, lk)!r}))")
        parts.append((Code.of(pair, " > 0") if op == " * " else pair, (*batch, 1, lq, lk)))
    return parts


def _per_position(call: LayerCall, name: str, batch: tuple[int, ...], length: int) -> Tensor:
    """An old-style per-token mask: [batch..., length] or [batch..., length, 1]."""
    t = call.tensor(name)
    if t.shape not in ((*batch, length), (*batch, length, 1)):
        raise call.fail(f"{call.written}: {name} must have shape {(*batch, length)} (or with "
                        f"a trailing 1), got {t.describe()}", "AOT210")
    return t


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
    call.emit("layers/attention_cache_mask.j2", {
        "length": str(max_length), "lq": str(lq), "index": index,
        "shape": repr(mask.shape)}, [mask], stem="cache_mask")
    new_index = call.out((), "int32")
    call.emit("ops/call.j2", {"call": Code.of(index, f" + {lq}")}, [new_index],
              stem="cache_index")
    call.set_state("cache", "cached_key", full[0])
    call.set_state("cache", "cached_value", full[1])
    call.set_state("cache", "cache_index", new_index)
    return full[0], full[1], mask


def multi_head_attention(call: LayerCall) -> Tensor:
    _unsupported(call)
    inputs_q = call.tensor("inputs_q", floating=True)
    inputs_kv = call.tensor("inputs_kv", floating=True) \
        if call.args.get("inputs_kv") is not None else inputs_q
    if inputs_q.ndim < 2 or inputs_q.ndim != inputs_kv.ndim or \
            inputs_q.shape[:-2] != inputs_kv.shape[:-2]:
        raise call.fail(f"{call.written}: inputs_q and inputs_kv must be [batch..., length, "
                        f"features] with the same batch dims, got {inputs_q.describe()} and "
                        f"{inputs_kv.describe()}", "AOT210")
    _attention_axis(call, inputs_q.ndim)
    heads = call.int("num_heads", minimum=1)
    features = call.args["out_features"] or inputs_q.shape[-1]
    qkv = call.args["qkv_features"] or inputs_q.shape[-1]
    if qkv % heads:
        raise call.fail(f"{call.written}: qkv_features={qkv} must be divisible by "
                        f"num_heads={heads}", "AOT203")
    dtype, pdt = call.dtype("dtype"), call.dtype("param_dtype")
    kinit, binit = call.initializer("kernel_init"), call.initializer("bias_init")
    use_bias, precision = call.bool("bias"), precision_code(call)
    proj = {}
    for name, x in (("query", inputs_q), ("key", inputs_kv), ("value", inputs_kv)):
        proj[name] = dense_general(sub_call(call, name, "DenseGeneral"), x,
                                   (heads, qkv // heads), (x.ndim - 1,), use_bias=use_bias,
                                   dtype=dtype, param_dtype=pdt, kernel_init=kinit,
                                   bias_init=binit, precision=precision, stem=name)
    query, key, value = proj["query"], proj["key"], proj["value"]
    batch, lq, lk = inputs_q.shape[:-2], inputs_q.shape[-2], inputs_kv.shape[-2]
    decode = call.bool("decode")
    parts: list[tuple[Code, tuple[int, ...]]] = []
    if decode:
        if lq != lk:
            raise call.fail(f"{call.written}: decode=True needs queries and keys/values of "
                            f"one length, got {lq} and {lk}", "AOT210")
        max_length = call.args["max_length"]
        max_length = lk if max_length is None else call.int("max_length", minimum=1)
        key, value, cache_mask = _decode(call, key, value, lq, max_length)
        lk = max_length
        parts.append((Code((cache_mask,)), cache_mask.shape))
    target = (*batch, heads, lq, lk)
    parts = _mask_components(call, target, batch, lq, lk, decode) + parts
    mask = _combine(call, parts)
    dropout = None
    rate = call.static("dropout_rate", float, int)
    if rate > 0 and not call.bool("deterministic"):
        dropout = (call.rng(), float(rate), call.bool("broadcast_dropout"))
    x = attend(call, query, key, value, dtype=dtype, mask=mask, dropout=dropout,
               precision=precision)
    out_kinit = call.initializer("out_kernel_init") if call.args["out_kernel_init"] is not None \
        else kinit
    out_binit = call.initializer("out_bias_init") if call.args["out_bias_init"] is not None \
        else binit
    return dense_general(sub_call(call, "out", "DenseGeneral"), x, (features,),
                         (x.ndim - 2, x.ndim - 1), use_bias=use_bias, dtype=dtype,
                         param_dtype=pdt, kernel_init=out_kinit, bias_init=out_binit,
                         precision=precision, stem="out")


_register("MultiHeadDotProductAttention", "layer", "inputs_q, inputs_kv=None, " + _COMMON,
          multi_head_attention, "layers/attention_weights.j2",
          "multi-head attention: query/key/value kernels (in, heads, head_dim), out kernel "
          "(heads, head_dim, features); decode=True keeps Linen's cache")
_register("SelfAttention", "layer", "inputs_q, " + _COMMON, multi_head_attention,
          "layers/attention_weights.j2",
          "MultiHeadDotProductAttention with inputs_kv = inputs_q (Linen names it "
          "SelfAttention_N)")
