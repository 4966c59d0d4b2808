"""Randomness: `nn.dropout`, `nn.make_rng()` and the `jax.random` samplers.

A stochastic target takes an explicit `rng`; each random op derives its key
from it by folding in its module path (`jax.random.fold_in(rng, hash(path))`),
so keys do not depend on call order.  Dropout and `make_rng` take Linen-style
automatic names (`Dropout_0`, `make_rng_0`) for that path; neither has
parameters, so the parameter tree is unchanged.

Dropout follows Linen's `Dropout.__call__` statement by statement: a
Bernoulli keep-mask of the broadcast shape, broadcast to the input, and
`lax.select(mask, x / keep_prob, zeros)`.  With `rate=0` or
`deterministic=True` nothing random is emitted and the target needs no rng.
"""

from __future__ import annotations

from typing import Any

from .. import dtypes as dt
from ..program import Code, Tensor
from .arrays import register
from .calls import FnCall, LayerCall
from .layers import layer

#: JAX's default typed-key dtype, as `str(key.dtype)` prints it.
KEY_DTYPE = "key<fry>"


class RngKey(Tensor):
    """A typed PRNG key value (`jax.random.key`): only random functions accept it."""

    __slots__ = ()

    def describe(self) -> str:
        return f"{KEY_DTYPE}[{', '.join(str(d) for d in self.shape)}]"


def new_key(call: FnCall) -> RngKey:
    return RngKey((), KEY_DTYPE)


def takes_keys(entry: Any) -> bool:
    """Whether an operation accepts `RngKey` arguments (resolve rejects them elsewhere)."""
    return bool(entry.extra.get("takes_keys"))


def _key_arg(call: LayerCall | FnCall, name: str) -> Code:
    value = call.args[name]
    if not isinstance(value, RngKey):
        raise call.fail(f"{call.written}: '{name}' must be a random key from nn.make_rng(), got "
                        f"{_describe(value)}", "AOT202")
    return Code((value,))


def _describe(value: Any) -> str:
    from ..values import describe_value

    return describe_value(value)


# ------------------------------------------------------------- dropout


def _dropout(call: LayerCall) -> Tensor:
    x = call.tensor("inputs", floating=True)
    rate = call.static("rate", float, int)
    if isinstance(rate, bool) or not 0.0 <= rate <= 1.0:
        raise call.fail(f"{call.written}: rate must be in [0, 1], got {rate!r}", "AOT203")
    if rate == 0.0 or call.bool("deterministic"):
        return x
    if rate == 1.0:  # Linen: avoids 0 / 0 in the gradient
        out = call.out(x.shape, x.dtype)
        call.emit("ops/call.j2", {"call": Code.of("jnp.zeros_like(", x, ")")}, [out],
                  stem="dropout")
        return out
    broadcast = set()
    for d in call.ints("broadcast_dims") or ():
        if not -x.ndim <= d < x.ndim:
            raise call.fail(f"{call.written}: broadcast_dims entry {d} is out of range for "
                            f"{x.describe()}", "AOT203")
        broadcast.add(d % x.ndim)
    key = _key_arg(call, "rng") if call.args["rng"] is not None else call.rng()
    out = call.out(x.shape, x.dtype)
    mask = tuple(1 if i in broadcast else d for i, d in enumerate(x.shape))
    call.emit("layers/dropout.j2", {
        "x": x, "key": key, "keep_prob": repr(1.0 - float(rate)),
        "mask_shape": mask_shape_code(x, broadcast), "shape": Code.of(x, ".shape"),
    }, [out], stem="dropout", temps={"keep": Tensor(mask, "bool")})
    return out


def mask_shape_code(x: Tensor, broadcast: set[int]) -> Code:
    """`x.shape`, or `(x.shape[0], 1, x.shape[2])` with 1 on the broadcast axes."""
    if not broadcast:
        return Code.of(x, ".shape")
    dims = [Code(("1",)) if i in broadcast else Code.of(x, f".shape[{i}]")
            for i in range(x.ndim)]
    return Code.of("(", Code.join(", ", dims), ",)" if x.ndim == 1 else ")")


dropout = layer("dropout", "inputs, rate, deterministic=False, rng=None, broadcast_dims=()",
                "layers/dropout.j2",
                "dropout: keeps each value with probability 1 - rate, scaled by 1 / (1 - rate)",
                linen_name="Dropout", stochastic=True)(_dropout)
dropout.extra["takes_keys"] = True


# ------------------------------------------------------------- make_rng


def _make_rng(call: LayerCall) -> RngKey:
    key = new_key(call)
    call.emit("ops/call.j2", {"call": call.rng()}, [key], stem="key")
    return key


layer("make_rng", "", "ops/call.j2",
      "a fresh random key for this call site, derived from the target's rng and the path",
      stochastic=True)(_make_rng)


# ------------------------------------------------------------- jax.random


def _float_dtype(call: FnCall) -> str:
    dtype = call.dtype("dtype")
    if dtype is None or not dt.is_floating(dtype):
        raise call.fail(f"{call.written}: dtype must be a floating dtype, got {dtype}", "AOT203")
    return dt.canonicalize(dtype)


def _shape_arg(call: FnCall, name: str) -> tuple[int, ...]:
    shape = call.ints(name, scalar_ok=False)
    assert shape is not None
    if any(d < 0 for d in shape):
        raise call.fail(f"{call.written}: {name} must be non-negative, got {shape}", "AOT203")
    return shape


def _sampler(call: FnCall) -> Tensor:
    _key_arg(call, "key")
    out = call.out(_shape_arg(call, "shape"), _float_dtype(call))
    call.emit_call([out], stem=call.entry.name)
    return out


def _bernoulli(call: FnCall) -> Tensor:
    _key_arg(call, "key")
    p = call.args["p"]
    if isinstance(p, Tensor):
        shape = p.shape if call.args["shape"] is None else _shape_arg(call, "shape")
    else:
        call.static("p", float, int)
        shape = () if call.args["shape"] is None else _shape_arg(call, "shape")
    out = call.out(shape, "bool")
    call.emit_call([out], stem="mask")
    return out


for _name, _sig in (("normal", "key, shape=(), dtype=float32"),
                    ("uniform", "key, shape=(), dtype=float32, minval=0.0, maxval=1.0")):
    register(_name, ("jax.random",), _sig, _sampler, doc=f"jax.random.{_name} samples",
             takes_keys=True)
register("bernoulli", ("jax.random",), "key, p=0.5, shape=None", _bernoulli,
         doc="jax.random.bernoulli mask", takes_keys=True)
