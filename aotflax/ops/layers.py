"""Built-in layers: old `flax.nn` call signatures, Flax Linen parameter trees and math.

Each rule mirrors the corresponding Linen `__call__` (dtype promotion, order
of operations) so generated models match Linen numerically, and declares its
parameters with Linen's names and shapes so Linen checkpoints load unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .. import dtypes as dt
from .. import shapes as sh
from ..program import Code, Tensor
from ..quoting import literal, string
from ..values import DType
from . import initializers as inits
from . import plans
from .calls import FnCall, LayerCall, old_names
from .registry import REGISTRY, CallError, Entry, Signature

_DEFAULTS: dict[str, Any] = {
    "float32": DType("float32"),
    "lecun_normal": inits.LECUN_NORMAL,
    "zeros": inits.ZEROS,
    "ones": inits.ONES,
    "embed_init": inits.EMBED_INIT,
}


def layer(name: str, sig: str, template: str, doc: str, *, linen_name: str | None = None,
          stochastic: bool = False) -> Callable[[Callable[[LayerCall], Any]], Entry]:
    """Register a layer rule under `nn.<name>`."""

    def wrap(rule: Callable[[LayerCall], Any]) -> Entry:
        entry = Entry(name, ("nn",), "layer", Signature.parse(sig, _DEFAULTS), rule, template,
                      linen_name=linen_name or name, doc=doc, stochastic=stochastic)
        return REGISTRY.add(entry)

    return wrap


def nn_function(name: str, sig: str, template: str, doc: str) -> Callable:
    """Register a parameter-free function under `nn.<name>`."""

    def wrap(rule: Callable[[FnCall], Any]) -> Entry:
        entry = Entry(name, ("nn",), "function", Signature.parse(sig, _DEFAULTS), rule, template,
                      doc=doc)
        return REGISTRY.add(entry)

    return wrap


# ------------------------------------------------------------- helpers


def cast(value: Code | Tensor, current: str, target: str) -> Code:
    """`value.astype(jnp.target)` when the dtypes differ (Linen's promote_dtype)."""
    code = value if isinstance(value, Code) else Code((value,))
    if current == target:
        return code
    return Code.of(code, f".astype(jnp.{target})")


def feature_view(code: Code, ndim: int) -> Code:
    """A (C,) parameter reshaped to broadcast over the last axis of a rank-`ndim` value.

    Linen reshapes biases and scales explicitly, so generated code also runs under
    `jax_numpy_rank_promotion="raise"`.
    """
    if ndim <= 1:
        return code
    shape = ", ".join(["1"] * (ndim - 1) + ["-1"])
    return Code.of(code, f".reshape(({shape}))")


def subtree(entries: dict[str, Code]) -> Code:
    """The code of a dict holding `entries` (key -> code of its value): the subtree they
    are read from (`params["BatchNorm_0"]`) when each is that subtree's entry of its key,
    else a dict display (`{"scale": w}`: parameters a caller gave, a state just updated).
    """
    first: tuple | None = None
    for key, code in entries.items():
        suffix = _INDEX.get(key) or _index(key)
        parts = code.parts
        last = parts[-1] if parts else None
        if not isinstance(last, str) or not last.endswith(suffix):
            break
        head = (*parts[:-1], last[:-len(suffix)]) if last != suffix else parts[:-1]
        if not head or first is not None and head != first:
            break
        first = head
    else:
        if first is not None:
            return Code(first)
    items = [Code.of(f"{string(k)}: ", v) for k, v in entries.items()]
    return Code.of("{", Code.join(", ", items), "}")


#: `["key"]` by key (a layer's few names, quoted once each).
_INDEX: dict[str, str] = {}


def _index(key: str) -> str:
    """`["key"]`: the subscript reading `key`."""
    text = f"[{string(key)}]"
    if len(_INDEX) < 1024:
        _INDEX[key] = text
    return text


def options(**items: str | None) -> str:
    """`, name=value` for the keyword arguments of a layer helper, in order; a value of
    None is left out (the caller passes None for the helper's default)."""
    return "".join(f", {k}={v}" for k, v in items.items() if v is not None)


def dtype_option(call: LayerCall) -> str | None:
    """The layer's `dtype=` as the helper takes it (None: not given)."""
    name = call.dtype("dtype")
    return None if name is None else f"jnp.{name}"


def compute_dtype(call: LayerCall, *dtypes: str) -> str:
    """Linen: `dtype` if given, else the promotion of inputs and parameters."""
    explicit = call.dtype("dtype")
    if explicit is not None:
        return explicit
    result, _ = dt.result_type(*[(d, False) for d in dtypes])
    return result


def tuple_arg(call: FnCall, name: str, n: int, default: int | None = None) -> tuple[int, ...]:
    value = call.args[name]
    if value is None:
        if default is None:
            raise call.fail(f"{call.written}: '{name}' is required", "AOT203")
        return (default,) * n
    if isinstance(value, int) and not isinstance(value, bool):
        out = (value,) * n
    else:
        out = call.ints(name, length=n)
    if not all(1 <= v <= _MAX_STRIDE for v in out):
        raise call.fail(f"{call.written}: '{name}' must be positive ints (at most "
                        f"{_MAX_STRIDE}), got {value!r}", "AOT203")
    return out


#: Strides and dilations reach XLA as 32-bit values.
_MAX_STRIDE = 2**31 - 1


def need_batch(call: FnCall, x: Tensor, spatial: int) -> None:
    if x.ndim != spatial + 2:
        raise call.fail(
            f"{call.written} with a {spatial}-D window expects inputs of rank {spatial + 2} "
            f"(batch, *spatial, features), got {x.describe()}",
            hint="add a batch dimension with x[None] or reshape extra batch dimensions",
        )


def precision_code(call: FnCall) -> str:
    """`, precision="highest"` for a static precision name, "" for None."""
    value = call.args.get("precision")
    if value is None:
        return ""
    if isinstance(value, str) and value.lower() in ("default", "high", "highest", "fastest",
                                                    "bfloat16", "tensorfloat32", "float32"):
        return f', precision="{value.lower()}"'
    raise call.fail(f"{call.written}: precision must be None or a name such as 'highest', "
                    f"got {value!r}", "AOT203")


# ------------------------------------------------------------- Dense


@layer("Dense", "inputs, features, bias=True, dtype=None, param_dtype=float32, precision=None, "
       "kernel_init=lecun_normal, bias_init=zeros", "layers/dense.j2",
       "fully connected layer: kernel (in, features), bias (features,)")
def dense(call: LayerCall) -> Tensor:
    x = call.tensor("inputs", floating=True)
    if x.ndim == 0:
        raise call.fail(f"nn.Dense expects at least a 1-D input, got {x.describe()}")
    features = call.int("features", minimum=1)
    pdt = call.dtype("param_dtype", allow_none=False)
    kernel = call.param("kernel", (x.shape[-1], features), pdt, call.initializer("kernel_init"))
    use_bias = call.bool("bias")
    bias = call.param("bias", (features,), pdt, call.initializer("bias_init")) if use_bias else None
    dtype = compute_dtype(call, x.dtype, pdt)
    out = call.out((*x.shape[:-1], features), dtype)
    bias_code = (Code.of(" + ", feature_view(cast(bias, pdt, dtype), len(out.shape)))
                 if bias is not None else Code(("",)))
    args: dict[str, Code | str | Tensor] = {
        "x": cast(x, x.dtype, dtype), "kernel": cast(kernel, pdt, dtype), "bias": bias_code}
    precision = precision_code(call)
    if precision:  # `x @ kernel` cannot say it: jnp.matmul(x, kernel, precision="highest")
        call.emit("layers/dense_precise.j2", {**args, "precision": Code((precision,))}, [out],
                  stem="dense")
    else:
        call.emit("layers/dense.j2", args, [out], stem="dense")
    return out


# ------------------------------------------------------------- Conv


def padding_pairs(call: LayerCall, n: int) -> tuple[Code, str | tuple]:
    padding = call.args["padding"]
    if isinstance(padding, str):
        up = padding.upper()
        if up not in ("SAME", "VALID"):
            raise call.fail(f"{call.written}: padding {padding!r} is not supported; use 'SAME', "
                            "'VALID' or explicit (low, high) pairs", "AOT203")
        return Code((literal(up),)), up
    if isinstance(padding, int) and not isinstance(padding, bool):
        pairs = tuple((padding, padding) for _ in range(n))
    elif isinstance(padding, (tuple, list)) and len(padding) == n:
        pairs = tuple(
            (p, p) if isinstance(p, int) else tuple(p) if isinstance(p, (tuple, list)) else p
            for p in padding
        )
    else:
        pairs = None
    if pairs is None or not _int_pairs(pairs):
        raise call.fail(f"{call.written}: padding must be 'SAME', 'VALID', an int or {n} "
                        f"(low, high) pairs of ints, got {padding!r}", "AOT203")
    return Code((repr(pairs),)), pairs


def _int_pairs(pairs: Any) -> bool:
    return all(isinstance(p, tuple) and len(p) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in p) for p in pairs)


def dimension_numbers(n: int) -> str:
    spatial = "DHW"[3 - n:] if n <= 3 else None
    if spatial is None:
        raise CallError("AOT203", "convolutions over more than 3 spatial dimensions are not "
                        "supported")
    return f'("N{spatial}C", "{spatial}IO", "N{spatial}C")'


@dataclass(frozen=True, slots=True)
class _ConvPlan:
    """What a Conv call derives from its input's type and static arguments."""

    kernel_shape: tuple[int, ...]
    features: int
    shape: tuple[int, ...]
    param_dtype: str
    dtype: str
    bias: bool
    #: Template arguments that are text alone.
    strides: Code
    padding: Code
    extra: Code
    dimension_numbers: Code


_CONV_STATIC = ("features", "kernel_size", "strides", "padding", "input_dilation",
                "kernel_dilation", "feature_group_count", "bias", "dtype", "param_dtype",
                "precision")


def _conv_plan(call: LayerCall, x: Tensor) -> _ConvPlan:
    """`conv`'s checks and derived values, in its order (see `plans`)."""
    call.tensor("inputs", floating=True)
    ks = call.args["kernel_size"]
    ks = (ks,) if isinstance(ks, int) and not isinstance(ks, bool) else call.ints("kernel_size")
    n = len(ks)
    need_batch(call, x, n)
    features = call.int("features", minimum=1)
    groups = call.int("feature_group_count", minimum=1)
    strides = tuple_arg(call, "strides", n, 1)
    lhs_dil = tuple_arg(call, "input_dilation", n, 1)
    rhs_dil = tuple_arg(call, "kernel_dilation", n, 1)
    pad_code, pad = padding_pairs(call, n)
    cin = x.shape[-1]
    if cin % groups or features % groups:
        raise call.fail(f"{call.written}: input features {cin} and features {features} must be "
                        f"divisible by feature_group_count={groups}")
    pdt = call.dtype("param_dtype", allow_none=False)
    kshape = (*ks, cin // groups, features)
    try:
        shape = sh.conv_output_shape(x.shape, kshape, strides, pad, lhs_dil, rhs_dil, groups)
    except sh.ShapeError as e:
        raise call.fail(f"{call.written}: {e}", "AOT210") from None
    use_bias = call.bool("bias")
    dtype = compute_dtype(call, x.dtype, pdt)
    return _ConvPlan(kshape, features, shape, pdt, dtype, use_bias, Code((repr(strides),)),
                     pad_code,
                     Code((_conv_extra(lhs_dil, rhs_dil, groups) + precision_code(call),)),
                     Code((dimension_numbers(n),)))


def _conv_extra(lhs_dil: tuple[int, ...], rhs_dil: tuple[int, ...], groups: int) -> str:
    """The keyword arguments of `lax.conv_general_dilated` that are not its defaults."""
    extra = ""
    if any(d != 1 for d in lhs_dil):
        extra += f", lhs_dilation={lhs_dil!r}"
    if any(d != 1 for d in rhs_dil):
        extra += f", rhs_dilation={rhs_dil!r}"
    if groups != 1:
        extra += f", feature_group_count={groups}"
    return extra


def _conv_planned(call: LayerCall, x: Tensor, counts: dict[str, int] | None,
                  plan: _ConvPlan) -> Tensor:
    """`conv` at one call site, from its plan: its declarations and its op."""
    pdt, dtype = plan.param_dtype, plan.dtype
    kernel = call.param("kernel", plan.kernel_shape, pdt, call.initializer("kernel_init"))
    bias = call.param("bias", (plan.features,), pdt, call.initializer("bias_init")) \
        if plan.bias else None
    out = call.out(plan.shape, dtype)
    count = plans.flops(counts, "layers/conv.j2")
    counted = call.emit("layers/conv.j2", {
        "x": cast(x, x.dtype, dtype), "kernel": cast(kernel, pdt, dtype),
        "strides": plan.strides, "padding": plan.padding, "extra": plan.extra,
        "dimension_numbers": plan.dimension_numbers,
        "bias": Code.of(" + ", feature_view(cast(bias, pdt, dtype), len(plan.shape)))
        if bias is not None else "",
    }, [out], stem="conv", flops=count)
    plans.record_flops(counts, "layers/conv.j2", counted)
    return out


#: lax's names of the dilations (`lhs_dilation=`, `rhs_dilation=`), which flax.nn code
#: of 2020 passed to `nn.Conv` too: the layer's own `input_dilation` / `kernel_dilation`.
_CONV_OLD_NAMES = {"lhs_dilation": "input_dilation", "rhs_dilation": "kernel_dilation"}


@layer("Conv", "inputs, features, kernel_size, strides=None, padding='SAME', "
       "input_dilation=None, kernel_dilation=None, feature_group_count=1, bias=True, "
       "dtype=None, param_dtype=float32, precision=None, kernel_init=lecun_normal, "
       "bias_init=zeros, *, lhs_dilation=None, rhs_dilation=None", "layers/conv.j2",
       "convolution, channels last: kernel (*window, in // groups, features); lhs_dilation= "
       "and rhs_dilation= are input_dilation's and kernel_dilation's lax names")
def conv(call: LayerCall) -> Tensor:
    old_names(call, _CONV_OLD_NAMES)
    return plans.run(call, _conv_plan, _conv_planned, "inputs", _CONV_STATIC)


# ------------------------------------------------------------- Embed


@layer("Embed", "inputs, num_embeddings, features, dtype=None, param_dtype=float32, "
       "embedding_init=embed_init", "layers/embed.j2",
       "embedding lookup: embedding (num_embeddings, features)")
def embed(call: LayerCall) -> Tensor:
    x = call.tensor("inputs")
    if not dt.is_integer(x.dtype):
        raise call.fail(f"nn.Embed expects integer indices, got {x.describe()}",
                        hint="cast token ids with x.astype(jnp.int32)")
    n = call.int("num_embeddings", minimum=1)
    features = call.int("features", minimum=1)
    pdt = call.dtype("param_dtype", allow_none=False)
    table = call.param("embedding", (n, features), pdt, call.initializer("embedding_init"))
    dtype = call.dtype("dtype") or pdt
    out = call.out((*x.shape, features), dtype)
    call.emit("layers/embed.j2", {"table": cast(table, pdt, dtype), "x": x}, [out], stem="embed")
    return out


# ------------------------------------------------------------- LayerNorm


@layer("LayerNorm", "x, epsilon=1e-06, dtype=None, param_dtype=float32, bias=True, scale=True, "
       "bias_init=zeros, scale_init=ones, reduction_axes=-1, feature_axes=-1",
       "layers/layer_norm.j2",
       "layer normalization over the last axis: scale (C,), bias (C,); statistics in float32")
def layer_norm(call: LayerCall) -> Tensor:
    x = call.tensor("x", floating=True)
    if call.args["reduction_axes"] not in (-1, (-1,), x.ndim - 1) or \
            call.args["feature_axes"] not in (-1, (-1,), x.ndim - 1):
        raise call.fail("nn.LayerNorm supports reduction_axes=-1 and feature_axes=-1 only",
                        "AOT203")
    eps = call.static("epsilon", float, int)
    pdt = call.dtype("param_dtype", allow_none=False)
    c = x.shape[-1]
    scale = call.param("scale", (c,), pdt, call.initializer("scale_init")) \
        if call.bool("scale") else None
    bias = call.param("bias", (c,), pdt, call.initializer("bias_init")) \
        if call.bool("bias") else None
    dtype = call.dtype("dtype") or dt.result_type(
        (x.dtype, False), *[(pdt, False) for p in (scale, bias) if p is not None])[0]
    # Linen computes the statistics from x cast to float32 first, and returns the result
    # cast to `dtype` (both inside the runtime's helper)
    out = call.out(x.shape, dtype)
    params = {name: code for name, code in (("scale", scale), ("bias", bias))
              if code is not None}
    call.emit("layers/layer_norm.j2", {
        "x": x,
        "scale": Code.of(" * ", feature_view(scale, x.ndim)) if scale is not None else "",
        "bias": Code.of(" + ", feature_view(bias, x.ndim)) if bias is not None else "",
        "params": subtree(params),
        "options": options(epsilon=literal(float(eps)), dtype=dtype_option(call)),
    }, [out], stem="norm")
    return out


# ------------------------------------------------------------- pooling


def _pool(kind: str) -> Callable[[FnCall], Tensor]:
    def rule(call: FnCall) -> Tensor:
        x = call.tensor("inputs")
        window = call.ints("window_shape")
        n = len(window)
        need_batch(call, x, n)
        strides = tuple_arg(call, "strides", n, 1)
        padding = call.args["padding"]
        if isinstance(padding, str):
            pad_code = literal(padding.upper())
            pad: Any = padding.upper()
        else:
            ok = isinstance(padding, (tuple, list)) and all(
                isinstance(p, (tuple, list)) for p in padding)
            pairs = tuple(tuple(p) for p in padding) if ok else ()
            if not ok or not _int_pairs(pairs):
                raise call.fail(f"{call.written}: padding must be 'SAME', 'VALID' or (low, high) "
                                f"pairs of ints, got {padding!r}", "AOT203")
            pad = pairs
            pad_code = repr(((0, 0), *pairs, (0, 0)))
        try:
            shape = sh.pool_output_shape(x.shape, window, strides, pad)
        except sh.ShapeError as e:
            raise call.fail(f"{call.written}: {e}", "AOT210") from None
        out = call.out(shape, x.dtype)
        dims, steps = repr((1, *window, 1)), repr((1, *strides, 1))
        size = 1
        for w in window:
            size *= w
        divisor = repr(size)
        if kind == "avg" and not call.bool("count_include_pad") and pad != "VALID":
            # Linen: divide by how many real (unpadded) inputs each window covers
            ones = f"jnp.ones({(1, *x.shape[1:-1], 1)!r}, jnp.{x.dtype})"
            divisor = f"jax.lax.reduce_window({ones}, 0.0, jax.lax.add, {dims}, {steps}, {pad_code})"
        call.emit(f"layers/{kind}_pool.j2", {
            "x": x, "dims": dims, "strides": steps, "padding": pad_code, "size": divisor,
        }, [out], stem="pool")
        return out

    return rule


nn_function("max_pool", "inputs, window_shape, strides=None, padding='VALID'",
            "layers/max_pool.j2", "max pooling over spatial dims")(_pool("max"))
nn_function("avg_pool", "inputs, window_shape, strides=None, padding='VALID', "
            "count_include_pad=True", "layers/avg_pool.j2",
            "average pooling over spatial dims")(_pool("avg"))


# ------------------------------------------------------------- Embed.attend


def _embed_attend(call: LayerCall) -> Tensor:
    """`embed.attend(query)` on a shared Embed: `query @ embedding.T` (Linen's `attend`)."""
    q = call.tensor("query", floating=True)
    n = call.int("num_embeddings", minimum=1)
    features = call.int("features", minimum=1)
    if q.shape[-1] != features:
        raise call.fail(f"Embed.attend expects queries with {features} features, got "
                        f"{q.describe()}", "AOT210")
    pdt = call.dtype("param_dtype", allow_none=False)
    table = call.param("embedding", (n, features), pdt, call.initializer("embedding_init"))
    dtype = call.dtype("dtype") or dt.result_type((q.dtype, False), (pdt, False))[0]
    out = call.out((*q.shape[:-1], n), dtype)
    call.emit("layers/embed_attend.j2", {"q": cast(q, q.dtype, dtype),
                                         "table": cast(table, pdt, dtype)}, [out], stem="logits")
    return out


REGISTRY.add(Entry("attend", ("nn.Embed",), "layer",
                   Signature.parse("query, num_embeddings, features, dtype=None, "
                                   "param_dtype=float32, embedding_init=embed_init", _DEFAULTS),
                   _embed_attend, "layers/embed_attend.j2", linen_name="Embed",
                   doc="Embed.attend(query): query @ embedding.T, sharing the embedding"))
