"""Initializers written in the model file, interpreted like any model code.

`self.param("w", shape, my_init)` with `def my_init(key, shape, dtype)` (or a closure
a factory returns, or a lambda) is resolved here for that shape and dtype: its
body runs through the static interpreter, the random and array operations it
makes become an emitted function of the generated module, and `init` calls that
function.  Nothing of the model file's text is ever copied into generated code,
so an initializer can reach exactly what other model code can: the operation
table, static values and its own arguments.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..diagnostics import Note, Span
from ..ops.calls import value_code
from ..ops.stochastic import KEY_DTYPE, RngKey
from ..program import Code, Function, Tensor, describe
from ..scopes import FunctionState
from ..sizes import plain
from ..values import Closure, DType, Env, Initializer, Partial, describe_value, is_static
from .base import Abort, Frame

if TYPE_CHECKING:
    from .core import Resolver


class AdoptDtype(Exception):
    """A flax.nn initializer `(key, shape)` of the model file returned another dtype than
    its variable was declared with, where the declaration said no dtype
    (`Resolver.adopt_dtype`): the declaration is made again with that dtype, as old
    flax.nn gave a parameter the dtype its initializer returned (a complex kernel)."""

    def __init__(self, dtype: str):
        super().__init__(dtype)
        self.dtype = dtype


class InitializersMixin:
    """Resolution of the model file's own initializers."""

    def user_initializer(self: Resolver, given: Closure | Partial, shape: tuple[int, ...],
                         dtype: str, span: Span) -> str:
        """The emitted function `name(key, shape, dtype)` that initializes one variable:
        a function of the model file, or `functools.partial` of one (its bound arguments
        static: `partial(constant_initializer, fill_value=0.5)`)."""
        cache_key = (id(given), tuple(shape), dtype)
        found = self.init_cache.get(cache_key)
        if found is not None:
            return found
        init, bound, keywords = _initializer_parts(given)
        # sizes the enclosing function read (`n_heads` of `v.shape`) are plain ints in the
        # initializer, its own function: as a size handed to another module is
        if not init.toplevel:
            init = dataclasses.replace(init, env=_plain_env(init.env))
        if not all(is_static(v) for v in [*bound, *keywords.values()]):
            raise self.error("AOT314", f"initializer functools.partial({init.name}, ...) binds "
                             "arrays; an initializer's bound arguments are static values",
                             span, hint="bind numbers, or initialize from data with "
                             "self.param(name, None, init)")
        positional = [p for p in init.params.params if p.kind == "positional"][len(bound):]
        positional = [p for p in positional if p.name not in keywords]
        if len(positional) < 2 and not any(p.kind == "vararg" for p in init.params.params):
            raise self.error("AOT314", f"initializer {init.name} must take (key, shape, dtype), "
                             f"it takes ({', '.join(p.name for p in positional)})"
                             + (" besides the arguments its partial binds" if init is not given
                                else ""), init.span, notes=(Note("used here", span),))
        fn = FunctionState(self)
        key = RngKey((), KEY_DTYPE)
        args: list[Any] = [key, tuple(shape), DType(dtype)][:max(2, min(3, len(positional)))]
        errors = self.errors
        adopt, self.adopt_dtype = self.adopt_dtype, False  # for this variable, not inside
        try:
            result = self._call_closure(init, [*bound, *args], keywords, span,
                                        Frame(init.env, fn, None, None))
        finally:
            self.adopt_dtype = adopt
        if self.errors != errors:
            raise Abort()
        produced = {id(key)} | {id(v) for op in fn.ops for v in op.outputs}
        if any(id(v) not in produced for op in fn.ops for v in op.inputs()) or (
                isinstance(result, Tensor) and id(result) not in produced):
            raise self.error(
                "AOT352", f"initializer {init.name} reads arrays of the module's forward pass; "
                "only a parameter of the module itself can be initialized from data", span,
                notes=(Note("defined here", init.span),),
                hint="declare it with self.param(name, None, init) and apply the layer with "
                     "those parameters: nn.Dense.call({\"kernel\": kernel, ...}, x, ...)")
        result = self._to_device(result, Frame(init.env, fn, None, None), span)
        result = self._initializer_result(init, result, shape, dtype, span, fn, adopt,
                                          takes=len(positional))
        name = self._function_name(init.name if init.name.isidentifier() else "initializer")
        what = describe(tuple(shape), dtype)
        self.functions.append(Function(
            name=name, doc=f"Initializer {init.name} for {what}", takes_params=False,
            state_collections=(), takes_rng=False, inputs=(("key", key),),
            body=tuple(fn.ops), result=value_code(result), result_tensors=(result,),
            span=init.span, hints=dict(fn.hints), static_args=("shape", "dtype")))
        self.init_cache[cache_key] = name
        return name

    def _initializer_result(self: Resolver, init: Closure, result: Any, shape: tuple[int, ...],
                            dtype: str, span: Span, fn: FunctionState,
                            adopt: bool = False, takes: int | None = None) -> Tensor:
        """`takes`: how many positional arguments the initializer is called with (a
        partial's bound ones excluded)."""
        want = describe(tuple(shape), dtype)
        where = init.span
        notes = (Note("declared here", span),)
        if isinstance(result, RngKey) or not isinstance(result, Tensor):
            raise self.error("AOT215", f"initializer {init.name} returns "
                             f"{describe_value(result)}, not an array {want}", where,
                             notes=notes, hint="an initializer is called as init(key, shape, "
                             "dtype) and returns an array of that shape and dtype")
        if tuple(result.shape) != tuple(shape) or result.dtype != dtype:
            hint = ("an initializer is called as init(key, shape, dtype) and returns an array "
                    "of that shape and dtype")
            if takes is None:
                takes = len([p for p in init.params.params if p.kind == "positional"])
            if tuple(result.shape) == tuple(shape) and takes < 3:
                # flax.nn's initializers took (key, shape): the result's dtype was the
                # parameter's (a complex kernel), unless the declaration says which
                if adopt:
                    raise AdoptDtype(result.dtype)
                hint = (f"old flax.nn gave a parameter the dtype its initializer returns; here "
                        f"it is declared {dtype} (a layer's param_dtype, self.param's dtype=): "
                        f"pass param_dtype=jnp.{result.dtype} to the layer, or "
                        f"dtype=jnp.{result.dtype} to self.param")
            raise self.error("AOT215", f"initializer {init.name} returns {result.describe()} "
                             f"for a variable declared {want}", where, notes=notes, hint=hint)
        return result

    def _call_initializer(self: Resolver, init: Initializer, args: list, kwargs: dict, span: Span,
                          frame: Frame) -> Tensor:
        """`nn.initializers.normal(0.02)(key, shape, dtype)` inside model code."""
        from ..ops.registry import Signature

        if frame.fn is None:
            raise self.error("AOT324", "an initializer can only be called inside a module or "
                             "an initializer of the model file", span)
        try:
            b = Signature.parse("key, shape, dtype=None").bind(init.description, args, kwargs)
        except Exception as e:  # CallError
            raise self.error(getattr(e, "code", "AOT301"), getattr(e, "message", str(e)),
                             span) from None
        shape, dtype = b["shape"], b["dtype"]
        if not isinstance(b["key"], RngKey):
            raise self.error("AOT202", f"initializer {init.description} needs a random key, got "
                             f"{describe_value(b['key'])}", span)
        if not (isinstance(shape, (tuple, list)) and all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise self.error("AOT203", f"initializer shape must be a tuple of ints, got "
                             f"{describe_value(shape)}", span)
        name = dtype.name if isinstance(dtype, DType) else "float32"
        out = Tensor(tuple(shape), name)
        code = value_code(tuple(shape))
        frame.fn.emit("ops/call.j2", {"call": Code.of(
            f"{init.code}(", value_code(b["key"]), ", ", code, f", jnp.{name})")}, (out,), span,
            "init")
        return out


def _initializer_parts(init: Closure | Partial) -> tuple[Closure, tuple[Any, ...], dict[str, Any]]:
    """The function an initializer calls, and the arguments a partial binds first."""
    if isinstance(init, Partial):
        return init.func, tuple(init.args), dict(init.kwargs)
    return init, (), {}


def _plain_env(env: Env) -> Env:
    """A copy of a closure's local scopes with every size a plain int (module globals,
    computed lazily, stay as they are: they hold no sizes of arrays)."""
    if type(env) is not Env:
        return env
    copy = Env(_plain_env(env.parent) if env.parent is not None else None)
    copy.vars = {k: plain(v) for k, v in env.vars.items()}
    return copy

