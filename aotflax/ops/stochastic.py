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

Keys are values of their own kind: typed keys (`nn.make_rng()`,
`jax.random.key(seed)`) or raw uint32[2] key data (`jax.random.PRNGKey(seed)`,
as 2020 code wrote it).  `jax.random.split` and `fold_in` derive new ones;
unpacking (`a, b = jax.random.split(key)`) and indexing (`keys[0]`) give
single keys.  Only the `jax.random` functions and dropout's `rng=` take them.
"""

from __future__ import annotations

from typing import Any

from .. import dtypes as dt
from .. import shapes as sh
from ..program import Code, Tensor
from .arrays import register, shape_rule
from .calls import FnCall, LayerCall, aval_of
from .layers import layer

#: JAX's default typed-key dtype, as `str(key.dtype)` prints it.
KEY_DTYPE = "key<fry>"
#: The dtype of raw key data (`jax.random.PRNGKey(0)` is a uint32[2] array).
RAW_KEY_DTYPE = "uint32"


class RngKey(Tensor):
    """Random keys: typed (`jax.random.key`, dtype KEY_DTYPE) or raw key data
    (`jax.random.PRNGKey`, uint32[..., 2]).  Only random functions accept them."""

    __slots__ = ()

    def describe(self) -> str:
        if is_raw_key(self):
            return Tensor.describe(self)
        return f"{KEY_DTYPE}[{', '.join(str(d) for d in self.shape)}]"


def is_raw_key(key: Tensor) -> bool:
    """Whether a key is raw uint32 key data rather than a typed key."""
    return key.dtype != KEY_DTYPE


def new_key(call: FnCall) -> RngKey:
    return RngKey((), KEY_DTYPE)


def takes_keys(entry: Any) -> bool:
    """Whether an operation accepts `RngKey` arguments (resolve rejects them elsewhere)."""
    return bool(entry.extra.get("takes_keys"))


def _key_arg(call: LayerCall | FnCall, name: str) -> Code:
    value = call.args[name]
    if not isinstance(value, RngKey):
        raise call.fail(f"{call.written}: '{name}' must be a random key (from nn.make_rng(), "
                        f"jax.random.split, ...), got {_describe(value)}", "AOT202")
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
    value = call.args[name]
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)  # jax.random takes a bare int as a 1-D shape
        call.args[name] = value
    shape = call.ints(name, scalar_ok=False)
    assert shape is not None
    if any(d < 0 for d in shape):
        raise call.fail(f"{call.written}: {name} must be non-negative, got {shape}", "AOT203")
    return shape


def _single_key(call: FnCall, name: str = "key") -> RngKey:
    """A single key: a typed key of shape () or raw key data uint32[2]."""
    _key_arg(call, name)
    key: RngKey = call.args[name]
    if key.shape != ((2,) if is_raw_key(key) else ()):
        raise call.fail(f"{call.written} takes a single key, got {key.describe()}", "AOT201",
                        hint="index the array of keys first, e.g. keys[0]")
    return key


def _bounds(call: FnCall, shape: tuple[int, ...], *names: str) -> None:
    """minval / maxval style arguments: numbers or arrays that broadcast to `shape`."""
    for name in names:
        aval = aval_of(call.args[name])
        if aval is None:
            raise call.fail(f"{call.written}: '{name}' must be a number or an array, got "
                            f"{_describe(call.args[name])}", "AOT202")
        try:
            ok = sh.broadcast_shapes(aval[0], shape) == shape
        except sh.ShapeError:
            ok = False
        if not ok:
            raise call.fail(f"{call.written}: '{name}' of shape {aval[0]} does not broadcast to "
                            f"the sample shape {shape}", "AOT210")


def _sampler(call: FnCall) -> Tensor:
    _single_key(call)
    shape = _shape_arg(call, "shape")
    if call.entry.name == "uniform":
        _bounds(call, shape, "minval", "maxval")
    out = call.out(shape, _float_dtype(call))
    call.emit_call([out], stem=call.entry.name)
    return out


def _bernoulli(call: FnCall) -> Tensor:
    _single_key(call)
    p = call.args["p"]
    if isinstance(p, Tensor):
        shape = p.shape if call.args["shape"] is None else _shape_arg(call, "shape")
        _bounds(call, shape, "p")
    else:
        call.static("p", float, int)
        shape = () if call.args["shape"] is None else _shape_arg(call, "shape")
    out = call.out(shape, "bool")
    call.emit_call([out], stem="mask")
    return out


def _truncated_normal(call: FnCall) -> Tensor:
    _single_key(call)
    bounds = [b for b in (aval_of(call.args[n]) for n in ("lower", "upper")) if b is not None]
    if len(bounds) != 2:
        raise call.fail(f"{call.written}: lower and upper must be numbers or arrays", "AOT202")
    if call.args["shape"] is None:
        shape = shape_rule(call, sh.broadcast_shapes, *[b[0] for b in bounds])
    else:
        shape = _shape_arg(call, "shape")
        _bounds(call, shape, "lower", "upper")
    out = call.out(shape, _float_dtype(call))
    call.emit_call([out], stem="sample")
    return out


def _randint(call: FnCall) -> Tensor:
    _single_key(call)
    shape = _shape_arg(call, "shape")
    _bounds(call, shape, "minval", "maxval")
    dtype = call.dtype("dtype")
    if dtype is None or not dt.is_integer(dtype):
        raise call.fail(f"{call.written}: dtype must be an integer dtype, got {dtype}", "AOT203")
    out = call.out(shape, dt.canonicalize(dtype))
    call.emit_call([out], stem="ints")
    return out


def _categorical(call: FnCall) -> Tensor:
    _single_key(call)
    logits = call.tensor("logits")
    if not dt.is_floating(logits.dtype):
        raise call.fail(f"{call.written}: logits must be a floating array, got "
                        f"{logits.describe()}", hint="cast first, e.g. x.astype(jnp.float32)")
    axis = sh.normalize_axis(call.int("axis"), logits.ndim) if logits.ndim else None
    if axis is None:
        raise call.fail(f"{call.written}: logits must have at least one axis, got "
                        f"{logits.describe()}")
    batch = logits.shape[:axis] + logits.shape[axis + 1:]
    shape = batch if call.args["shape"] is None else _shape_arg(call, "shape")
    if call.args["shape"] is not None and not _broadcasts(batch, shape):
        raise call.fail(f"{call.written}: shape {shape} is not broadcast-compatible with the "
                        f"batch shape {batch} of the logits", "AOT210")
    if not call.bool("replace"):
        if call.args["shape"] is None:
            raise call.fail(f"{call.written}: replace=False needs shape=", "AOT203")
        n = sh.size(shape) // max(1, sh.size(batch))  # draws per batch entry
        if n > logits.shape[axis]:
            raise call.fail(f"{call.written}: cannot draw {n} samples without replacement "
                            f"from {logits.shape[axis]} categories", "AOT203")
    out = call.out(shape, "int32")
    call.emit_call([out], stem="sample")
    return out


def _broadcasts(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        return sh.broadcast_shapes(shape, target) == target
    except sh.ShapeError:
        return False


def _permutation(call: FnCall) -> Tensor:
    _single_key(call)
    x = call.args["x"]
    if isinstance(x, int) and not isinstance(x, bool):
        if x < 0:
            raise call.fail(f"{call.written}: cannot permute a negative count {x}", "AOT203")
        out = call.out((x,), "int32")
    else:
        t = call.tensor("x")
        if not t.ndim:
            raise call.fail(f"{call.written}: x must be an int or an array with an axis, got "
                            f"{t.describe()}")
        shape_rule(call, sh.normalize_axis, call.int("axis"), t.ndim)
        out = call.out(t.shape, t.dtype)
    call.emit_call([out], stem="perm")
    return out


def _choice(call: FnCall) -> Tensor:
    _single_key(call)
    a = call.args["a"]
    shape = _shape_arg(call, "shape")
    if isinstance(a, int) and not isinstance(a, bool):
        n, dtype, out_shape = a, "int32", shape
    else:
        t = call.tensor("a")
        if not t.ndim:
            raise call.fail(f"{call.written}: a must be an int or an array with an axis, got "
                            f"{t.describe()}")
        axis = shape_rule(call, sh.normalize_axis, call.int("axis"), t.ndim)
        n, dtype = t.shape[axis], t.dtype
        out_shape = t.shape[:axis] + shape + t.shape[axis + 1:]
    if n <= 0 and sh.size(shape):
        raise call.fail(f"{call.written}: cannot choose from an empty population", "AOT203")
    if not call.bool("replace") and sh.size(shape) > n:
        raise call.fail(f"{call.written}: cannot take {sh.size(shape)} samples without "
                        f"replacement from {n}", "AOT203")
    p = call.args["p"]
    if p is not None:
        pa = aval_of(p)
        if pa is None or pa[0] != (n,):
            raise call.fail(f"{call.written}: p must be a 1-D array of {n} probabilities",
                            "AOT210")
    out = call.out(out_shape, dtype)
    call.emit_call([out], stem="choice")
    return out


for _name, _sig in (("normal", "key, shape=(), dtype=float32"),
                    ("uniform", "key, shape=(), dtype=float32, minval=0.0, maxval=1.0"),
                    ("gumbel", "key, shape=(), dtype=float32, mode=None"),
                    ("exponential", "key, shape=(), dtype=float32"),
                    ("laplace", "key, shape=(), dtype=float32"),
                    ("logistic", "key, shape=(), dtype=float32"),
                    ("cauchy", "key, shape=(), dtype=float32")):
    register(_name, ("jax.random",), _sig, _sampler, doc=f"jax.random.{_name} samples",
             takes_keys=True)
register("bernoulli", ("jax.random",), "key, p=0.5, shape=None", _bernoulli,
         doc="jax.random.bernoulli mask", takes_keys=True)
register("truncated_normal", ("jax.random",), "key, lower, upper, shape=None, dtype=float32",
         _truncated_normal, doc="jax.random.truncated_normal samples", takes_keys=True)
register("randint", ("jax.random",), "key, shape, minval, maxval, dtype=int32", _randint,
         doc="jax.random.randint integers in [minval, maxval)", takes_keys=True)
register("categorical", ("jax.random",),
         "key, logits, axis=-1, shape=None, replace=True, mode=None", _categorical,
         doc="jax.random.categorical samples from logits", takes_keys=True)
register("permutation", ("jax.random",), "key, x, axis=0, independent=False", _permutation,
         doc="jax.random.permutation of range(x) or of an array along an axis", takes_keys=True)
register("choice", ("jax.random",), "key, a, shape=(), replace=True, p=None, axis=0", _choice,
         doc="jax.random.choice from range(a) or an array's axis", takes_keys=True)

# ------------------------------------------------------------- keys


def _seed(call: FnCall) -> None:
    seed = call.args["seed"]
    if isinstance(seed, Tensor):
        if seed.shape or not dt.is_integer(seed.dtype):
            raise call.fail(f"{call.written}: seed must be an int or an integer scalar, got "
                            f"{seed.describe()}")
    elif isinstance(seed, bool) or not isinstance(seed, int):
        raise call.fail(f"{call.written}: seed must be an int, got {_describe(seed)}", "AOT203")
    elif not -2**63 <= seed < 2**64:
        raise call.fail(f"{call.written}: seed {seed} does not fit 64 bits", "AOT203")
    if call.args["impl"] is not None:
        raise call.fail(f"{call.written}: only the default PRNG implementation is supported",
                        "AOT203", hint="drop impl=")


def _key(call: FnCall) -> RngKey:
    _seed(call)
    out = RngKey((), KEY_DTYPE)
    call.emit_call([out], stem="key")
    return out


def _prng_key(call: FnCall) -> RngKey:
    _seed(call)
    out = RngKey((2,), RAW_KEY_DTYPE)
    call.emit_call([out], stem="key")
    return out


def _split(call: FnCall) -> RngKey:
    key = _single_key(call)
    num = call.args["num"]
    shape = (num,) if isinstance(num, int) and not isinstance(num, bool) else num
    call.args["shape"] = shape
    counts = _shape_arg(call, "shape")
    out = RngKey(counts + key.shape, key.dtype)
    call.emit_call([out], stem="keys")
    return out


def _fold_in(call: FnCall) -> RngKey:
    key = _single_key(call)
    data = call.args["data"]
    if isinstance(data, Tensor):
        if data.shape or not dt.is_integer(data.dtype):
            raise call.fail(f"{call.written}: data must be an int or an integer scalar, got "
                            f"{data.describe()}")
    elif isinstance(data, bool) or not isinstance(data, int):
        raise call.fail(f"{call.written}: data must be an int, got {_describe(data)}", "AOT203")
    out = RngKey(key.shape, key.dtype)
    call.emit_call([out], stem="key")
    return out


def _key_data(call: FnCall) -> Tensor:
    keys = call.args["keys"]
    _key_arg(call, "keys")
    shape = keys.shape if is_raw_key(keys) else keys.shape + (2,)
    out = call.out(shape, RAW_KEY_DTYPE)
    call.emit_call([out], stem="key_data")
    return out


def _wrap_key_data(call: FnCall) -> RngKey:
    data = call.tensor("key_data")
    if data.dtype != RAW_KEY_DTYPE or not data.shape or data.shape[-1] != 2:
        raise call.fail(f"{call.written} needs uint32[..., 2] key data, got {data.describe()}")
    if call.args["impl"] is not None:
        raise call.fail(f"{call.written}: only the default PRNG implementation is supported",
                        "AOT203", hint="drop impl=")
    out = RngKey(data.shape[:-1], KEY_DTYPE)
    call.emit_call([out], stem="key")
    return out


register("key", ("jax.random",), "seed, *, impl=None", _key,
         doc="a typed random key from a seed", takes_keys=True)
register("PRNGKey", ("jax.random",), "seed, *, impl=None", _prng_key,
         doc="raw key data uint32[2] from a seed (the old spelling of jax.random.key)",
         takes_keys=True)
register("split", ("jax.random",), "key, num=2", _split,
         doc="num new keys from one key (unpack them: a, b = jax.random.split(key))",
         takes_keys=True)
register("fold_in", ("jax.random",), "key, data", _fold_in,
         doc="a new key from a key and an integer", takes_keys=True)
register("key_data", ("jax.random",), "keys", _key_data,
         doc="the uint32 data of keys", takes_keys=True)
register("wrap_key_data", ("jax.random",), "key_data, *, impl=None", _wrap_key_data,
         doc="typed keys from uint32[..., 2] key data", takes_keys=True)
