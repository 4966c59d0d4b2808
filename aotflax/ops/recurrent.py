"""Recurrent cells: LSTMCell, GRUCell, ConvLSTM with old `flax.nn` signatures.

A cell call is one time step, `cell(carry, x) -> (new_carry, y)`, with the
hidden size taken from the carry (old `flax.nn`) or checked against
`features=`.  Parameters follow Linen's trees (one Dense or Conv submodule per
gate: `ii`, `hi`, ... / `ih`, `hh`) and the math follows Linen's `__call__`
term by term, so results match to rounding.

`nn.LSTMCell.initialize_carry(rng, batch_dims, size)` (and the GRU / ConvLSTM
variants) give old `flax.nn`'s zero carries.
"""

from __future__ import annotations

from typing import Any

from .. import dtypes as dt
from .. import shapes as sh
from ..program import Code, Tensor
from ..values import DType, Initializer, OpRef
from . import initializers as inits
from .calls import FnCall, LayerCall
from .layers import cast, dimension_numbers, feature_view, padding_pairs, tuple_arg
from .linear import sub_call
from .registry import REGISTRY, Entry, Signature

_DEFAULTS: dict[str, Any] = {
    "float32": DType("float32"),
    "lecun_normal": inits.LECUN_NORMAL,
    "zeros": inits.ZEROS,
    "orthogonal": Initializer("jax.nn.initializers.orthogonal()",
                              "nn.initializers.orthogonal()"),
    "sigmoid": OpRef(REGISTRY.entry("nn", "sigmoid"), "nn.sigmoid"),
    "tanh": OpRef(REGISTRY.entry("nn", "tanh"), "nn.tanh"),
}


def _register(name: str, namespace: str, kind: str, sig: str, rule: Any, template: str,
              doc: str, linen_name: str | None = None) -> Entry:
    return REGISTRY.add(Entry(name, (namespace,), kind, Signature.parse(sig, _DEFAULTS), rule,
                              template, linen_name=linen_name, doc=doc))


# ------------------------------------------------------------- helpers


def _carry(call: LayerCall, n: int) -> tuple[Tensor, ...]:
    """The carry argument: one array (n == 1) or a tuple of n arrays of one shape."""
    value = call.args["carry"]
    items = (value,) if n == 1 and isinstance(value, Tensor) else value
    if not isinstance(items, (tuple, list)) or len(items) != n or \
            not all(isinstance(t, Tensor) for t in items):
        want = "an array h" if n == 1 else "a tuple (c, h) of arrays"
        raise call.fail(f"{call.written}: carry must be {want}", "AOT202",
                        hint=f"start from {call.written}.initialize_carry(rng, batch_dims, size)")
    if len({t.shape for t in items}) != 1:
        raise call.fail(f"{call.written}: carry parts must have one shape, got "
                        f"{', '.join(t.describe() for t in items)}", "AOT210")
    return tuple(items)


def _features(call: LayerCall, h: Tensor) -> int:
    features = call.args.get("features")
    if features is not None and features != h.shape[-1]:
        raise call.fail(f"{call.written}: features={features} but the carry has "
                        f"{h.shape[-1]} features ({h.describe()})", "AOT210")
    return h.shape[-1]


def _dense(call: LayerCall, name: str, x: Tensor, features: int, *, bias: bool,
           kernel_init: Any, bias_init: Any, pdt: str) -> tuple[Code, str]:
    """Linen `Dense(name=...)` on x as an expression, and its dtype."""
    sub = sub_call(call, name, "Dense")
    kernel = sub.param("kernel", (x.shape[-1], features), pdt, kernel_init)
    dtype = call.dtype("dtype") or dt.result_type((x.dtype, False), (pdt, False))[0]
    code = Code.of(cast(x, x.dtype, dtype), " @ ", cast(kernel, pdt, dtype))
    if bias:
        b = sub.param("bias", (features,), pdt, bias_init)
        code = Code.of(code, " + ", feature_view(cast(b, pdt, dtype), x.ndim))
    return code, dtype


def _gate(call: LayerCall, fn: str, a: tuple[Code, str], b: tuple[Code, str],
          shape: tuple[int, ...], stem: str) -> Tensor:
    """`fn(a + (b))`: Linen adds the input and the recurrent Dense, in that order."""
    out = call.out(shape, dt.result_type((a[1], False), (b[1], False))[0])
    call.emit("layers/rnn_gate.j2", {"fn": fn, "a": a[0], "b": b[0]},
              [out], stem=stem)
    return out


def _promote(*ts: Tensor) -> str:
    return dt.result_type(*[(t.dtype, t.weak) for t in ts])[0]


def _check_inputs(call: LayerCall, x: Tensor, h: Tensor) -> None:
    if x.ndim < 1 or x.shape[:-1] != h.shape[:-1]:
        raise call.fail(f"{call.written}: inputs {x.describe()} and carry {h.describe()} must "
                        "share their batch dimensions", "AOT210")


# ------------------------------------------------------------- LSTMCell


def lstm_cell(call: LayerCall) -> tuple[tuple[Tensor, Tensor], Tensor]:
    c, h = _carry(call, 2)
    x = call.tensor("inputs", floating=True)
    _check_inputs(call, x, h)
    n = _features(call, h)
    gate_fn, act = call.activation("gate_fn"), call.activation("activation_fn")
    pdt = call.dtype("param_dtype", allow_none=False)
    kinit, rinit = call.initializer("kernel_init"), call.initializer("recurrent_kernel_init")
    binit = call.initializer("bias_init")
    gates = {}
    for g, fn in (("i", gate_fn), ("f", gate_fn), ("g", act), ("o", gate_fn)):
        a = _dense(call, f"i{g}", x, n, bias=False, kernel_init=kinit, bias_init=binit, pdt=pdt)
        b = _dense(call, f"h{g}", h, n, bias=True, kernel_init=rinit, bias_init=binit, pdt=pdt)
        gates[g] = _gate(call, fn, a, b, h.shape, g)
    new_c = call.out(h.shape, _promote(gates["f"], c, gates["i"], gates["g"]))
    call.emit("layers/lstm_memory.j2", {"f": gates["f"], "c": c, "i": gates["i"],
                                        "g": gates["g"]}, [new_c], stem="c")
    new_h = call.out(h.shape, _promote(gates["o"], new_c))
    call.emit("layers/lstm_hidden.j2", {"o": gates["o"], "act": act,
                                        "c": new_c}, [new_h], stem="h")
    return (new_c, new_h), new_h


_register("LSTMCell", "nn", "layer",
          "carry, inputs, gate_fn=sigmoid, activation_fn=tanh, kernel_init=lecun_normal, "
          "recurrent_kernel_init=orthogonal, bias_init=zeros, features=None, dtype=None, "
          "param_dtype=float32", lstm_cell, "layers/rnn_gate.j2",
          "LSTM step (c, h), x -> ((c, h), h): ii/if/ig/io kernels (in, H); hi/hf/hg/ho "
          "kernels (H, H) with biases", linen_name="LSTMCell")


# ------------------------------------------------------------- GRUCell


def gru_cell(call: LayerCall) -> tuple[Tensor, Tensor]:
    (h,) = _carry(call, 1)
    x = call.tensor("inputs", floating=True)
    _check_inputs(call, x, h)
    n = _features(call, h)
    gate_fn, act = call.activation("gate_fn"), call.activation("activation_fn")
    pdt = call.dtype("param_dtype", allow_none=False)
    kinit, rinit = call.initializer("kernel_init"), call.initializer("recurrent_kernel_init")
    binit = call.initializer("bias_init")

    def dense_i(name: str) -> tuple[Code, str]:
        return _dense(call, name, x, n, bias=True, kernel_init=kinit, bias_init=binit, pdt=pdt)

    def dense_h(name: str, bias: bool = False) -> tuple[Code, str]:
        return _dense(call, name, h, n, bias=bias, kernel_init=rinit, bias_init=binit, pdt=pdt)

    r = _gate(call, gate_fn, dense_i("ir"), dense_h("hr"), h.shape, "r")
    z = _gate(call, gate_fn, dense_i("iz"), dense_h("hz"), h.shape, "z")
    a, b = dense_i("in"), dense_h("hn", bias=True)
    cand = call.out(h.shape, dt.result_type((a[1], False), (r.dtype, False), (b[1], False))[0])
    call.emit("layers/gru_candidate.j2", {"fn": act, "a": a[0], "r": r,
                                          "b": b[0]}, [cand], stem="n")
    new_h = call.out(h.shape, _promote(z, cand, h))
    call.emit("layers/gru_hidden.j2", {"z": z, "n": cand, "h": h}, [new_h], stem="h")
    return new_h, new_h


_register("GRUCell", "nn", "layer",
          "carry, inputs, gate_fn=sigmoid, activation_fn=tanh, kernel_init=lecun_normal, "
          "recurrent_kernel_init=orthogonal, bias_init=zeros, features=None, dtype=None, "
          "param_dtype=float32", gru_cell, "layers/gru_candidate.j2",
          "GRU step h, x -> (h, h): ir/iz/in kernels (in, H) with biases; hr/hz kernels "
          "(H, H); hn kernel (H, H) with bias", linen_name="GRUCell")


# ------------------------------------------------------------- ConvLSTM


def _conv(call: LayerCall, name: str, x: Tensor, features: int, ks: tuple[int, ...],
          strides: tuple[int, ...], pad_code: Code, pad: Any, bias: bool, pdt: str) -> Tensor:
    """Linen `Conv(name=...)` on x, emitted as its own line."""
    sub = sub_call(call, name, "Conv")
    kshape = (*ks, x.shape[-1], features)
    try:
        shape = sh.conv_output_shape(x.shape, kshape, strides, pad)
    except sh.ShapeError as e:
        raise call.fail(f"{call.written}: {e}", "AOT210") from None
    kernel = sub.param("kernel", kshape, pdt, inits.LECUN_NORMAL)
    b = sub.param("bias", (features,), pdt, inits.ZEROS) if bias else None
    dtype = call.dtype("dtype") or dt.result_type((x.dtype, False), (pdt, False))[0]
    out = call.out(shape, dtype)
    call.emit("layers/conv.j2", {
        "x": cast(x, x.dtype, dtype), "kernel": cast(kernel, pdt, dtype),
        "strides": repr(strides), "padding": pad_code, "extra": "",
        "dimension_numbers": dimension_numbers(len(ks)),
        "bias": Code.of(" + ", feature_view(cast(b, pdt, dtype), len(shape)))
        if b is not None else "",
    }, [out], stem=name)
    return out


def conv_lstm(call: LayerCall) -> tuple[tuple[Tensor, Tensor], Tensor]:
    c, h = _carry(call, 2)
    x = call.tensor("inputs", floating=True)
    ks = call.args["kernel_size"]
    ks = (ks,) if isinstance(ks, int) and not isinstance(ks, bool) else call.ints("kernel_size")
    n = len(ks)
    if x.ndim != n + 2 or h.ndim != n + 2 or x.shape[0] != h.shape[0]:
        raise call.fail(f"{call.written} with a {n}-D kernel expects inputs and carry of rank "
                        f"{n + 2} (batch, *spatial, features), got {x.describe()} and "
                        f"{h.describe()}", "AOT210")
    features = call.int("features", minimum=1)
    if h.shape[-1] != features:
        raise call.fail(f"{call.written}: features={features} but the carry has "
                        f"{h.shape[-1]} features ({h.describe()})", "AOT210")
    strides = tuple_arg(call, "strides", n, 1)
    pad_code, pad = padding_pairs(call, n)
    bias, pdt = call.bool("bias"), call.dtype("param_dtype", allow_none=False)
    ih = _conv(call, "ih", x, 4 * features, ks, strides, pad_code, pad, bias, pdt)
    hh = _conv(call, "hh", h, 4 * features, ks, strides, pad_code, pad, bias, pdt)
    if ih.shape != hh.shape or ih.shape[:-1] != h.shape[:-1]:
        raise call.fail(f"{call.written}: the input and hidden convolutions give "
                        f"{ih.describe()} and {hh.describe()}, which must both match the carry "
                        f"{h.describe()} with {4 * features} features", "AOT210")
    dtype = _promote(ih, hh)
    parts = [call.out(h.shape, dtype) for _ in range(4)]
    call.emit("layers/conv_lstm_split.j2", {"ih": ih, "hh": hh}, parts, stem="gates")
    hint = getattr(call.ctx, "hint", None)
    if hint is not None:
        for part, name in zip(parts, "igfo"):
            hint(part, name)
    i, g, f, o = parts
    new_c = call.out(h.shape, _promote(f, c, i, g))
    call.emit("layers/conv_lstm_memory.j2", {"f": f, "c": c, "i": i, "g": g}, [new_c], stem="c")
    new_h = call.out(h.shape, _promote(o, new_c))
    call.emit("layers/lstm_hidden.j2", {"o": Code.of("jax.nn.sigmoid(", o, ")"),
                                        "act": "jnp.tanh", "c": new_c}, [new_h], stem="h")
    return (new_c, new_h), new_h


for _name in ("ConvLSTM", "ConvLSTMCell"):
    _register(_name, "nn", "layer",
              "carry, inputs, features, kernel_size, strides=None, padding='SAME', bias=True, "
              "dtype=None, param_dtype=float32", conv_lstm, "layers/conv_lstm_memory.j2",
              "convolutional LSTM step: ih kernel (*window, in, 4F), hh kernel (*window, F, "
              "4F), with biases (Linen's ConvLSTMCell)", linen_name="ConvLSTMCell")


# ------------------------------------------------------------- initialize_carry


def _initialize_carry(parts: int) -> Any:
    def rule(call: FnCall) -> Any:
        batch = call.ints("batch_dims")
        size = call.args["size"]
        size = (size,) if isinstance(size, int) and not isinstance(size, bool) \
            else call.ints("size")
        init = call.args["init_fn"]
        if init is not inits.ZEROS and getattr(init, "code", None) != inits.ZEROS.code:
            raise call.fail(f"{call.written}: only init_fn=nn.initializers.zeros is supported",
                            "AOT203", hint="add a learned or random initial state in the model")
        dtype = call.dtype("dtype", allow_none=False)
        shape = (*batch, *size)
        outs = [call.out(shape, dtype) for _ in range(parts)]
        for out, stem in zip(outs, ("c", "h") if parts == 2 else ("h",)):
            call.emit("layers/zeros.j2", {"shape": repr(shape), "dtype": dtype}, [out], stem=stem)
        return tuple(outs) if parts == 2 else outs[0]

    return rule


for _cls, _parts in (("LSTMCell", 2), ("GRUCell", 1), ("ConvLSTM", 2), ("ConvLSTMCell", 2)):
    _register("initialize_carry", f"nn.{_cls}", "function",
              "rng, batch_dims, size, init_fn=zeros, dtype=float32", _initialize_carry(_parts),
              "layers/zeros.j2",
              f"zero carry of nn.{_cls}: batch_dims + size" + (" for c and h" if _parts == 2
                                                               else ""))
    # old flax.nn signs it initialize_carry(rng, ...): a key from nn.make_rng() is fine
    REGISTRY.entry(f"nn.{_cls}", "initialize_carry").extra["takes_keys"] = True
