"""Call contexts handed to operation rules.

`FnCall` wraps one call of a function entry: the bound arguments, helpers
that check them (raising `CallError` with what was expected and found), and
`emit_call`, the default emission as a plain call of the same JAX function.
`LayerCall` adds the layer's scope: parameter and state declarations.
"""

from __future__ import annotations

import builtins
import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence, overload

import numpy as np

from .. import dtypes as dt
from ..diagnostics import Span
from ..program import Code, OpInfo, Tensor, Var
from ..quoting import identifier
from ..sizes import Size, SizeRef, SizeTuple, has_code, plain, plain_shape
from ..values import (
    Closure,
    DType,
    Initializer,
    InitializerFactory,
    OpRef,
    Partial,
    StaticError,
    describe_value,
    is_static,
    numpy_scalar_name,
    to_code,
)
from . import axes, flops
from .registry import CallError, Context, Entry, qualname

#: Static ints handed to JAX become C longs: keep them well inside int64.
_MAX_INT = 2**62
#: A Python int in an array expression is an int32 (jax_enable_x64 off): JAX overflows on
#: one that does not fit, so the build refuses it.
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def _not_an_array(written: str, name: str, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return (f"{written}: the Python int {describe_value(value)[4:]} for '{name}' does not "
                "fit int32, the type JAX gives Python ints in array expressions")
    return f"{written} expects an array for '{name}', got {describe_value(value)}"


def static_argument_error(call: "FnCall", args: tuple, error: Exception) -> CallError:
    """AOT203 for a static argument of the wrong kind: an array where a rule computes with
    the value (a shape, axes) is named as such; other values say what went wrong."""
    def arrays(value: Any) -> list[Tensor]:
        if isinstance(value, Tensor):
            return [value]
        if isinstance(value, (tuple, list)):
            return [t for v in value for t in arrays(v)]
        if isinstance(value, dict):
            return [t for v in value.values() for t in arrays(v)]
        return []

    found = arrays(args)
    if found:
        return CallError("AOT203", f"{call.written}: needs values known at build time here, "
                         f"got an array {found[0].describe()}",
                         hint="write a tuple of ints, or sizes read from x.shape")
    return CallError("AOT203", f"{call.written}: invalid static argument ({error})")


def value_code(value: Any) -> Code:
    """Code for a value that may contain tensors (lists of arrays, etc.) or sizes read
    from arrays (`x.shape[0]`, see `sizes`)."""
    if isinstance(value, Tensor):
        return Code((value,))
    if isinstance(value, (Size, SizeTuple)):
        return Code((SizeRef(value),))
    if isinstance(value, (tuple, list)) and (not is_static(value) or has_code(value)):
        items = [value_code(v) for v in value]
        open_, close = ("(", ")") if isinstance(value, tuple) else ("[", "]")
        if isinstance(value, tuple) and len(items) == 1:
            return Code.of(open_, items[0], ",", close)
        return Code.of(open_, Code.join(", ", items), close)
    if isinstance(value, dict) and (not is_static(value) or has_code(value)):
        items = [Code.of(to_code(k), ": ", value_code(v)) for k, v in value.items()]
        return Code.of("{", Code.join(", ", items), "}")
    try:
        return Code((to_code(plain(value)),))
    except StaticError as e:
        raise CallError("AOT305", str(e)) from None


def remember_ints(out: Tensor, data: Any) -> Tensor:
    """Record the value of an integer array made from static ints (`Tensor.known`)."""
    if dt.is_integer(out.dtype) and (isinstance(data, (tuple, list)) and len(data) <= 64
                                     or isinstance(data, int)):
        known = _ints(data)
        if known is not None:
            object.__setattr__(out, "known", known)  # set once, as the array is made
    return out


def _ints(v: Any) -> Any:
    """Static ints (nested in tuples and lists) as an int or tuples of ints, else None.

    (Module-level: a recursive closure would be a reference cycle, cyclic garbage.)"""
    if isinstance(v, (tuple, list)):
        items = [_ints(i) for i in v]
        return None if any(i is None for i in items) else tuple(items)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _numpy_type_code(code: str) -> str | None:
    """The dtype a numpy type code names (`'i4'` int32, `'<f4'` float32, `'u1'` uint8), or
    None; only short codes of one byte order, kind letter and size are read."""
    if not re.fullmatch(r"[<>=|]?[biufc][1-9][0-9]?", code):
        return None
    name = np.dtype(code).name
    return name if name in dt.ALL_DTYPES else None


def aval_of(value: Any) -> tuple[tuple[int, ...], str, bool] | None:
    """(shape, dtype, weak) of an array-like: a Tensor, a Python scalar or a nested list."""
    if isinstance(value, Tensor):
        return value.shape, value.dtype, value.weak
    np_name = numpy_scalar_name(value)
    if np_name is not None and np_name in dt.ALL_DTYPES:
        return (), dt.canonicalize(np_name), False  # numpy scalars are strongly typed
    if isinstance(value, bool):
        return (), "bool", True
    if isinstance(value, int):  # JAX gives a Python int the type int32: it must fit
        return ((), "int32", True) if _INT32_MIN <= value <= _INT32_MAX else None
    if isinstance(value, float):
        return (), "float32", True
    if isinstance(value, complex):
        return (), "complex64", True
    if isinstance(value, (list, tuple)) and value:
        inner = [aval_of(v) for v in value]
        known = [i for i in inner if i is not None]
        if len(known) != len(inner) or len({i[0] for i in known}) != 1:
            return None
        dtype, _ = dt.result_type(*[(i[1], i[2]) for i in known])
        return (len(value), *known[0][0]), dtype, False
    return None


@dataclass
class FnCall:
    """One call of a function entry."""

    entry: Entry
    #: How the user spelled the callee ("jnp.mean", "nn.relu", "x.reshape").
    written: str
    #: Bound arguments by parameter name.
    args: dict[str, Any]
    #: Arguments as written, for the default emission.
    positional: list[Any]
    keywords: dict[str, Any]
    span: Span
    ctx: Context
    #: Inside a module: draws a key as `nn.make_rng()` called here would (old flax.nn
    #: functions that draw without a key given, such as `dot_product_attention`).
    make_rng: Callable[[], Tensor] | None = field(default=None, kw_only=True)
    #: Calls a function of the model file, `(function, args, kwargs) -> value`, as the
    #: model's code would at the call site (a layer taking `attention_fn=`); None where
    #: the resolver gives none.
    call_function: Callable[[Any, list, dict], Any] | None = field(default=None, kw_only=True)

    # ---------------------------------------------------------- argument checks

    def fail(self, message: str, code: str = "AOT201", hint: str | None = None) -> CallError:
        return CallError(code, message, hint)

    def tensor(self, name: str, *, floating: bool = False, allow_static: bool = True) -> Tensor:
        """Argument `name` as an array (Python scalars and lists become constants)."""
        value = self.args[name]
        if not floating and isinstance(value, Tensor):  # most arguments: no work
            return value
        return self.as_tensor(value, name, floating=floating, allow_static=allow_static)

    def as_tensor(self, value: Any, name: str, *, floating: bool = False,
                  allow_static: bool = True) -> Tensor:
        """`value`, argument `name` (or one of a `*args`), as an array."""
        if isinstance(value, Tensor):
            t = value
        elif allow_static and (aval := aval_of(value)) is not None:
            shape, dtype, weak = aval
            t = self.ctx.new_tensor(shape, dtype, weak)
            self.ctx.emit("ops/call.j2", {"call": Code.of("jnp.asarray(", value_code(value), ")")},
                          (t,), self.span, "const")
            if isinstance(value, (list, tuple)):
                # the JAX of 2020 took a list where an array goes (`jnp.broadcast_to([1e10],
                # shape)`); today's rejects it: the call as emitted gets the array
                self._substitute(value, t)
        else:
            raise self.fail(_not_an_array(self.written, name, value), "AOT202")
        if floating and not dt.is_inexact(t.dtype):
            raise self.fail(
                f"{self.written} expects a floating input, got {t.describe()}",
                hint="cast first, e.g. x.astype(jnp.float32)",
            )
        return t

    def aval(self, name: str, *, convert: bool = True) -> tuple[tuple[int, ...], str, bool]:
        """Argument `name`'s shape, dtype and weak type; a list or tuple of numbers (or of
        arrays) becomes the array `jnp.asarray` makes of it, in the call as emitted too
        (`convert=False`: for the functions that make arrays of lists themselves)."""
        value = self.args[name]
        a = aval_of(value)
        if a is None:
            raise self.fail(_not_an_array(self.written, name, value), "AOT202")
        if convert and isinstance(value, (list, tuple)):
            t = self.tensor(name)
            return t.shape, t.dtype, t.weak
        return a

    def concrete(self, name: str) -> Any:
        """Argument `name`, with an integer array of known value (`jnp.array((1, 1, d))`)
        replaced by that value, here and in the call as emitted.

        The JAX of 2020 flax.nn code took such an array where it needed static ints
        (sizes, axes): it was built from constants, never traced.  Today's JAX traces it
        under jit, so the generated call gets the ints themselves."""
        value = self.args[name]
        if not isinstance(value, Tensor) or value.known is None:
            return value
        known = value.known
        self.args[name] = known
        self._substitute(value, known)
        return known

    def _substitute(self, value: Any, replacement: Any) -> None:
        """Argument `value` becomes `replacement`, here and in the call as emitted."""
        self.args = {k: replacement if v is value else v for k, v in self.args.items()}
        self.positional = [replacement if a is value else a for a in self.positional]
        self.keywords = {k: replacement if v is value else v for k, v in self.keywords.items()}

    def static(self, name: str, *types: type, allow_none: bool = False) -> Any:
        value = self.concrete(name)
        if value is None and allow_none:
            return None
        if not is_static(value):
            raise self.fail(
                f"{self.written}: '{name}' must be a static value, got {describe_value(value)}",
                "AOT203",
                hint="hyperparameters such as axes, sizes and flags are build-time values",
            )
        if types and not isinstance(value, types) and not (
                float in types and numpy_scalar_name(value) in ("float16", "float32")):
            want = " or ".join(t.__name__ for t in types)
            raise self.fail(
                f"{self.written}: '{name}' must be {want}, got {describe_value(value)}", "AOT203"
            )
        return value

    def int(self, name: str, *, minimum: int | None = None) -> int:
        value = self.static(name, int)
        if isinstance(value, bool):
            raise self.fail(f"{self.written}: '{name}' must be int, got {describe_value(value)}",
                            "AOT203")
        if minimum is not None and value < minimum:
            raise self.fail(f"{self.written}: '{name}' must be >= {minimum}, got {value}", "AOT203")
        if abs(value) > _MAX_INT:
            raise self.fail(f"{self.written}: '{name}' = {value} is too large", "AOT203")
        return value

    # (the methods `int` and `bool` shadow the builtins in this class's annotations)
    @overload
    def ints(self, name: str, length: builtins.int | None = None,
             allow_none: Literal[False] = False,
             scalar_ok: builtins.bool = False) -> tuple[builtins.int, ...]: ...

    @overload
    def ints(self, name: str, length: builtins.int | None = None, *,
             allow_none: builtins.bool, scalar_ok: builtins.bool = False
             ) -> tuple[builtins.int, ...] | None: ...

    def ints(self, name: str, length: builtins.int | None = None,
             allow_none: builtins.bool = False,
             scalar_ok: builtins.bool = False) -> tuple[builtins.int, ...] | None:
        value = self.concrete(name)
        if value is None and allow_none:
            return None
        if scalar_ok and isinstance(value, int) and not isinstance(value, bool):
            value = (value,) * (length or 1)
        if not isinstance(value, (tuple, list)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise self.fail(
                f"{self.written}: '{name}' must be a tuple of ints, got {describe_value(value)}",
                "AOT203",
            )
        if length is not None and len(value) != length:
            raise self.fail(
                f"{self.written}: '{name}' must have {length} entries, got {len(value)}", "AOT203"
            )
        if any(abs(v) > _MAX_INT for v in value):
            raise self.fail(f"{self.written}: '{name}' = {tuple(value)} is too large", "AOT203")
        return tuple(value)

    def bool(self, name: str) -> bool:
        value = self.args[name]
        if isinstance(value, Tensor):
            raise self.fail(
                f"{self.written}: '{name}' must be a static bool, got {describe_value(value)}",
                "AOT203",
                hint="flags such as deterministic= and use_running_average= are build-time values",
            )
        return bool(value)

    @overload
    def dtype(self, name: str, allow_none: Literal[False]) -> str: ...

    @overload
    def dtype(self, name: str, allow_none: builtins.bool = True) -> str | None: ...

    def dtype(self, name: str, allow_none: builtins.bool = True) -> str | None:
        value = self.args[name]
        if value is None and allow_none:
            return None
        if isinstance(value, DType):
            return value.name
        if isinstance(value, str) and value in dt.ALL_DTYPES:
            return value
        if isinstance(value, str) and (code := _numpy_type_code(value)) is not None:
            return code  # `x.astype('i4')` (Hugging Face's first Flax BERT): numpy's codes
        raise self.fail(
            f"{self.written}: '{name}' must be a dtype such as jnp.float32, got "
            f"{describe_value(value)}",
            "AOT203",
        )

    def initializer(self, name: str) -> Initializer | Closure | Partial:
        value = self.args[name]
        if isinstance(value, Initializer):
            return value
        if isinstance(value, Closure):
            return value  # a user `(key, shape, dtype)` function
        if isinstance(value, Partial) and isinstance(value.func, Closure):
            return value  # `functools.partial(f, fill_value=...)` of one
        if isinstance(value, InitializerFactory):
            raise self.fail(
                f"{self.written}: '{name}' got the initializer factory {value.name} without "
                "calling it",
                "AOT203",
                hint=f"write nn.initializers.{value.name}(...)",
            )
        raise self.fail(
            f"{self.written}: '{name}' must be an initializer, got {describe_value(value)}",
            "AOT203",
        )

    def activation(self, name: str) -> str:
        """An activation function argument (`nn.sigmoid`, `jnp.tanh`) as the code it calls."""
        value = self.args[name]
        if isinstance(value, OpRef) and value.entry.code is not None:
            return value.entry.code
        raise self.fail(
            f"{self.written}: '{name}' must be an activation function such as nn.relu, got "
            f"{describe_value(value)}",
            "AOT203",
        )

    # ---------------------------------------------------------- outputs

    def out(self, shape: Sequence[builtins.int], dtype: str, weak: builtins.bool = False
            ) -> Tensor:
        if type(shape) is tuple:
            for d in shape:
                if type(d) is not int:
                    break
            else:  # a tuple of plain ints already (what rules compute)
                return self.ctx.new_tensor(shape, dtype, weak)
        return self.ctx.new_tensor(tuple(int(d) for d in shape), dtype, weak)

    def code(self, name: str) -> Code:
        """Argument `name` as code: a size read from an array stays a read (`x.shape[0]`)."""
        return value_code(self.args[name])

    def call_code(self, func: str | None = None, method_of: Tensor | None = None,
                  arg_code: Callable[[Any], Code] = value_code) -> Code:
        """The call as the user wrote it: `func(args...)` or `x.method(args...)`;
        `arg_code` writes each argument (a rule taking a function of the table passes one
        that names it)."""
        positional = list(self.positional)
        if self.entry.kind == "method" and method_of is None:
            method_of, func = positional.pop(0), func or self.entry.name
        parts = [arg_code(a) for a in positional]
        parts += [Code.of(f"{identifier(k, 'keyword argument name')}=", arg_code(v))
                  for k, v in self.keywords.items()]
        if method_of is not None:
            return Code.of(method_of, f".{func}(", Code.join(", ", parts), ")")
        return Code.of(func or self.entry.code or self.written, "(", Code.join(", ", parts), ")")

    def emit_call(self, outputs: Sequence[Tensor], stem: str | None = None,
                  code: Code | None = None) -> None:
        """Emit `out = <call as written>`."""
        args = {"call": code or self.call_code()}
        self.ctx.emit("ops/call.j2", args, tuple(outputs), self.span,
                      stem or self.entry.name.lower(),
                      info=self.op_info("ops/call.j2", args, outputs))

    def emit(self, template: str, args: dict[str, Code | str | Tensor], outputs: Sequence[Var],
             stem: str | None = None,
             temps: "tuple[str, ...] | dict[str, Tensor | tuple[Tensor, ...]]" = (), *,
             flops: builtins.int | None = None) -> builtins.int:
        """Emit `template`; `temps` names its scratch variables, with their types where
        known (one per line assigning it) for the comments.  `flops`: the op's FLOPs when
        the rule knows them already (a shape plan, `plans`), else they are counted.

        **Returns:** the op's FLOPs."""
        coded = {k: v if isinstance(v, Code) else Code((v,)) for k, v in args.items()}
        types: tuple = ()
        if isinstance(temps, dict):
            types = tuple(t if isinstance(t, tuple) else (t,) for t in temps.values())
            temps = tuple(temps)
        info = self.op_info(template, coded, outputs, flops)
        self.ctx.emit(template, coded, tuple(outputs), self.span, stem or self.entry.name.lower(),
                      temps, info=info, temp_types=types)
        return info.flops

    def op_info(self, template: str, args: dict[str, Code], outputs: Sequence[Var],
                count: builtins.int | None = None) -> OpInfo:
        """What the model summary records of an op this call emits: entry, FLOPs, instance.

        `count`: its FLOPs, when known (else the entry's FLOP rule counts them)."""
        if count is None:
            count = flops.count(self, template, args, tuple(outputs))
        scope = getattr(self, "scope", None)
        if axes.recording_flows():
            return OpInfo(qualname(self.entry), count, None if scope is None else scope.prefix,
                          "" if scope is None else scope.owner,
                          flow=axes.flow(self, template, args, tuple(outputs)))
        return _op_info(self.entry.qualname, count, None if scope is None else scope.prefix,
                        "" if scope is None else scope.owner)


@functools.lru_cache(maxsize=4096)
def _op_info(entry: str, count: int, path: tuple[str, ...] | None, module: str) -> OpInfo:
    """One immutable `OpInfo` per (entry, FLOPs, instance path, class): layers of one
    shape at one path recur across the functions and targets of a model."""
    return OpInfo(entry, count, path, module)


class LayerScope:
    """What a layer rule may declare (implemented by resolve)."""

    #: The instance's path relative to the emitting function, and its class name.
    prefix: tuple[str, ...] = ()
    owner: str = ""

    def param(self, name: str, shape: tuple[int, ...], dtype: str,
              init: "Initializer | Closure | Partial",
              span: Span) -> Code:  # pragma: no cover - interface
        raise NotImplementedError

    def state(self, collection: str, name: str, shape: tuple[int, ...], dtype: str,
              init: "Initializer | Closure | Partial",
              span: Span) -> Code:  # pragma: no cover - interface
        raise NotImplementedError

    def set_state(self, collection: str, name: str, value: Tensor,
                  span: Span) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def set_state_tree(self, collection: str, value: Var,
                       span: Span) -> None:  # pragma: no cover - interface
        """The layer's whole new subtree of `collection`, one value (a dict at run time)."""
        raise NotImplementedError

    def rng(self, span: Span) -> Code:  # pragma: no cover - interface
        raise NotImplementedError

    def child(self, name: str, owner: str) -> LayerScope:  # pragma: no cover - interface
        """The scope of a submodule `name` of class `owner` (a layer built from layers)."""
        raise NotImplementedError


@dataclass
class LayerCall(FnCall):
    """One call of a layer: a function call with a parameter scope."""

    scope: LayerScope = field(kw_only=True)

    def param(self, name: str, shape: Sequence[int], dtype: str,
              init: "Initializer | Closure | Partial") -> Code:
        return self.scope.param(name, plain_shape(shape), dtype, init, self.span)

    def state(self, collection: str, name: str, shape: Sequence[int], dtype: str,
              init: "Initializer | Closure | Partial") -> Code:
        return self.scope.state(collection, name, plain_shape(shape), dtype, init, self.span)

    def set_state(self, collection: str, name: str, value: Tensor) -> None:
        self.scope.set_state(collection, name, value, self.span)

    def set_state_tree(self, collection: str, value: Var) -> None:
        self.scope.set_state_tree(collection, value, self.span)

    def rng(self) -> Code:
        return self.scope.rng(self.span)


def old_names(call: FnCall, names: dict[str, str]) -> None:
    """Arguments given under an old name (`names`: old -> new) moved to the new one; both
    given is a located error."""
    for old, new in names.items():
        if call.args.get(old) is None:
            continue
        if call.args.get(new) is not None:
            raise call.fail(f"{call.written}: give {new} or {old} (its old name), not both",
                            "AOT203")
        call.args[new] = call.args[old]
        call.args[old] = None
        call.keywords = {names.get(k, k): v for k, v in call.keywords.items()}
