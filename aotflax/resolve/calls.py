"""Calls: table entries, closures, builtins, methods, scan, Sequential, binding."""

from __future__ import annotations

import collections.abc
import itertools
from keyword import iskeyword
from typing import TYPE_CHECKING, Any

from .. import ir, namespaces, quoting, safety
from ..diagnostics import InternalError, Note, Span
from ..ops import REGISTRY, CallError, Entry
from ..ops import initializers as inits
from ..ops.calls import aval_of, value_code
from ..ops.host import HostArray
from ..ops.operators import AtIndex
from ..ops.stochastic import RngKey, is_raw_key
from ..program import (
    Code,
    Function,
    FunctionRef,
    Op,
    OpInfo,
    ParamDecl,
    Tensor,
    TreeVar,
    fresh_like,
    fresh_row,
)
from ..scopes import (
    Scope,
    StateVariable,
    StochasticBlock,
    check_name,
    subscript_path,
)
from ..values import (
    AbstractType,
    AttentionCache,
    BoundMethod,
    Closure,
    ConfigValue,
    DType,
    EnumClass,
    Env,
    Initializer,
    InitializerFactory,
    ModuleRef,
    Namespace,
    Opaque,
    OpRef,
    OptaxFn,
    Partial,
    Poison,
    Record,
    RecordClass,
    RecordTuple,
    SelfValue,
    SharedModule,
    StaticBuiltin,
    StaticError,
    StaticFunction,
    SuperFunction,
    SuperLayer,
    SuperModule,
    Traversal,
    UserModule,
    contains_poison,
    describe_value,
    is_static,
    shown,
)
from . import meshes, training
from .base import (
    MAX_CALL_DEPTH,
    MAX_STATIC_BITS,
    MAX_STATIC_LEN,
    MAX_UNROLL,
    Abort,
    Frame,
    ImportTimeArray,
    ImportTimeSignal,
    ReturnSignal,
    Sequential,
)
from .caches import CacheEntry
from .helpers import (
    NOT_COLLECTIONS,
    format_nested,
    range_too_long,
    rebuild,
    replace_size,
    result_leaves,
    static_size,
    tensor_leaves,
    tensors,
    tuple_code,
    unpack_code,
)
from .initializers import AdoptDtype
from .transforms import Checkpointed, CustomJvp, CustomVjp, PrimalCall, Vmapped

if TYPE_CHECKING:
    from .core import Resolver

#: Methods every module's `self` has (besides the module's own methods).
SELF_METHODS = frozenset({"param", "state", "get_param", "is_initializing", "is_stateful"})


#: The types `isinstance` knows at build time (static values are of these or of none).
_STATIC_TYPES: dict[str, type] = {"bool": bool, "int": int, "float": float, "str": str,
                                  "tuple": tuple, "list": list, "dict": dict}
#: The `collections.abc` classes a jax array is an instance of (it has `__iter__`,
#: `__len__` and `__contains__`, and is neither a Sequence nor hashable).
_ARRAY_ABCS = frozenset({"Iterable", "Sized", "Container", "Collection"})


#: An initializer's arguments are fixed when `init` is built; a jnp result is an array
#: of the computation (`jnp.sqrt(3.0)`), math and numpy on numbers are build-time values.
_ARRAY_ARGUMENT_HINT = ("an initializer's arguments are fixed when init is built, and a jnp "
                        "function makes an array of the computation; compute the number with "
                        "math or numpy (math.sqrt(3.0), np.sqrt(3.0)), which the build "
                        "evaluates")


class CallsMixin:
    """Calls: table entries, closures, builtins, methods, scan, Sequential, binding."""

    # ---------------------------------------------------------------- calls

    def _eval_Call(self: Resolver, expr: ir.Call, frame: Frame) -> Any:
        func = self.eval(expr.func, frame)
        args: list[Any] = []
        for a in expr.args:
            if isinstance(a, ir.Starred):
                args.extend(self._iterate(self.eval(a.value, frame), a.span))
            else:
                args.append(self.eval(a, frame))
        kwargs: dict[str, Any] = {}
        for kw in expr.keywords:
            value = self.eval(kw.value, frame)
            if kw.name is None and isinstance(value, ConfigValue):
                value = dict(value.fields)  # `**config`
            if kw.name is None:
                if not isinstance(value, dict):
                    raise self.error("AOT347", f"** needs a dict, got {describe_value(value)}",
                                     kw.span)
                for key in value:
                    problem = _keyword_problem(key)
                    if problem:
                        raise self.error("AOT347", f"** unpacks keyword arguments: {problem}",
                                         kw.span)
                kwargs.update(value)
            else:
                kwargs[kw.name] = value
        if isinstance(func, Poison) or contains_poison(args) or contains_poison(kwargs):
            raise Abort()
        if isinstance(func, Opaque):
            raise self._opaque_error(func, expr.span, "called")
        self._check_not_opaque([*args, *kwargs.values()], expr.span)
        return self._call(func, args, kwargs, expr, frame)

    def _call(self: Resolver, func: Any, args: list, kwargs: dict, expr: ir.Call, frame: Frame) -> Any:
        span = expr.span
        # the calls of most model code first (the cases below are other types)
        if isinstance(func, ModuleRef):
            return self._call_module_ref(func, args, kwargs, span, frame)
        if isinstance(func, OpRef):
            if func.entry.extra.get("host"):
                return self._host_call(func.entry, func.written, args, kwargs, span, frame)
            return self._call_entry(func.entry, func.written, args, kwargs, span, frame)
        if func is namespaces.TARGET or func is namespaces.TRAIN_TARGET:
            if frame.fn is not None:
                raise self.error("AOT400", "targets must be declared at the top level", span)
            return self._target_call(expr, frame, args, kwargs,
                                     train=func is namespaces.TRAIN_TARGET)
        if func is namespaces.MESH:
            return meshes.mesh(self, args, kwargs, span)
        if isinstance(func, OptaxFn):
            return training.call_optax(self, func, args, kwargs, span)
        if func is namespaces.ENUM_AUTO:
            return self._enum_auto(args, kwargs, span)
        if isinstance(func, StaticFunction):
            return self._call_static_function(func, args, kwargs, expr, frame)
        if isinstance(func, Partial):
            return self._call(func.func, [*func.args, *args], {**dict(func.kwargs), **kwargs},
                              expr, frame)
        if isinstance(func, RecordClass):
            return self._construct(func, args, kwargs, expr, frame)
        if isinstance(func, EnumClass):
            return self._enum_lookup(func, args, kwargs, span)

        if func is namespaces.MODEL_PARAM_TRAVERSAL:
            return training.traversal(self, args, kwargs, span)
        if func is namespaces.MULTI_OPTIMIZER:
            return training.multi_optimizer(self, args, kwargs, span)
        if func is namespaces.SEQUENTIAL:
            return self._sequential(args, kwargs, expr)
        if isinstance(func, Sequential):
            if len(args) != 1 or kwargs:
                raise self.error("AOT355", "a Sequential is called with one input: seq(x)", span)
            value = args[0]
            for layer in func.layers:
                value = self._call(layer, [value], {}, expr, frame)
            return value
        handler = _CONTROL_FLOW.get(id(func))
        if handler is not None:  # jax.lax.scan, fori_loop, map, cond, jax.tree_util.tree_map
            return getattr(self, handler)(args, kwargs, expr, frame)
        if func is namespaces.TREE_LEAVES:
            return self._tree_leaves(args, kwargs, span)
        if func is namespaces.ATTENTION_CACHE:
            if args or kwargs:
                raise self.error("AOT372", "nn.attention.Cache() takes no arguments", span,
                                 hint="write nn.attention.Cache().initialize_cache((batch, "
                                      "max_length))")
            return AttentionCache()
        if func is namespaces.VMAP:
            return self._vmap(args, kwargs, span)
        if func is namespaces.CHECKPOINT or func is namespaces.REMAT:
            return self._checkpoint("jax.checkpoint" if func is namespaces.CHECKPOINT
                                    else "jax.remat", args, kwargs, span)
        if isinstance(func, Checkpointed):
            return self._call_checkpointed(func, args, kwargs, expr, frame)
        if func is namespaces.JVP:
            return self._jvp(args, kwargs, expr, frame)
        if isinstance(func, Vmapped):
            return self._call_vmapped(func, args, kwargs, expr, frame)
        if func is namespaces.CUSTOM_JVP:
            return self._custom_jvp(args, kwargs, span)
        if isinstance(func, CustomJvp):
            return self._call_custom_jvp(func, args, kwargs, span, frame)
        if func is namespaces.CUSTOM_VJP:
            return self._custom_vjp(args, kwargs, span)
        if isinstance(func, CustomVjp):
            return self._call_custom_vjp(func, args, kwargs, span, frame)
        if isinstance(func, PrimalCall):
            return self._call_primal(func, args, span, frame)
        if isinstance(func, SharedModule):
            # numpy arrays handed to a layer or a module are arrays like any other
            args, kwargs = self._device_args(args, kwargs, frame, span)
            self._check_module_args(args, kwargs, span)
            return self._call_shared(func, args, kwargs, span, frame)
        if isinstance(func, Closure):
            return self._call_closure(func, args, kwargs, span, frame)
        if isinstance(func, BoundMethod):
            return self._call_method(func, args, kwargs, expr, frame)
        if isinstance(func, SuperFunction):
            return self._call_super(func, args, kwargs, expr.span)
        if isinstance(func, Record) and "__call__" in func.cls.methods:
            return self._record_call(func, "__call__", args, kwargs, expr.span, frame)
        if isinstance(func, StaticBuiltin) and func.name in ("map", "filter"):
            return self._map_filter(func.name, args, kwargs, expr, frame)
        if isinstance(func, StaticBuiltin) and func.name == "sum" and not all(
                is_static(v) for v in [*args, *kwargs.values()]):
            return self._sum_arrays(args, kwargs, span, frame)
        if isinstance(func, StaticBuiltin):
            return self._call_static(func, args, kwargs, span)
        if isinstance(func, InitializerFactory):
            return self._make_initializer(func, args, kwargs, span)
        if isinstance(func, Initializer):
            return self._call_initializer(func, args, kwargs, span, frame)
        if isinstance(func, DType):
            if func.host or (frame.fn is None and args and all(
                    is_static(a) for a in [*args, *kwargs.values()])):
                # outside a module (a hyperparameter: `fill_value=jnp.float32(0.5)`),
                # `jnp.float32(c)` of a number is a concrete strongly typed scalar, which
                # the numpy scalar of that type is, as jax treats it
                host = func if func.host else DType(func.name, host=True)
                got = self._host_scalar_type(host, args, kwargs, span, frame)
                if got is not NotImplemented:
                    return got
            if len(args) == 1 and not kwargs:
                return self._call_entry(REGISTRY.lookup("jnp", "asarray"), f"jnp.{func.name}",
                                        [args[0]], {"dtype": func}, span, frame)
        if isinstance(func, Namespace) and func.name == "nn.stochastic":
            return self._stochastic_block(args, kwargs, span)
        raise self.error("AOT348", f"{describe_value(func)} is not callable", span)

    def _stochastic_block(self: Resolver, args: list, kwargs: dict, span: Span
                          ) -> StochasticBlock:
        """`nn.stochastic(key)`, for a `with` block: its keys are old flax.nn's."""
        if len(args) != 1 or kwargs or not isinstance(args[0], RngKey) or \
                args[0].shape != ((2,) if is_raw_key(args[0]) else ()):
            raise self.error("AOT202", "nn.stochastic takes one random key (jax.random.PRNGKey"
                             f"(seed) or jax.random.key(seed)), got "
                             f"{', '.join(describe_value(a) for a in args) or 'nothing'}", span)
        return StochasticBlock(args[0], is_raw_key(args[0]))

    def _call_module_ref(self: Resolver, func: ModuleRef, args: list, kwargs: dict, span: Span,
                         frame: Frame) -> Any:
        """`Dense(x, 8)`, `Block(x, name="b")`: a layer or a user module, called."""
        if frame.fn is not None and frame.fn.stochastic and isinstance(func.module, UserModule):
            raise self.error("AOT346", f"module {func.class_name} is called inside `with "
                             "nn.stochastic(...)`: its own draws would not come from that key "
                             "here", span, hint="call the module outside the block; inside it, "
                             "draw with nn.make_rng() and nn.dropout")
        # numpy arrays handed to a layer or a module are arrays like any other
        args, kwargs = self._device_args(args, kwargs, frame, span)
        self._check_module_args(args, kwargs, span)
        func, default_name = func.split_name()  # `M.partial(name="a")`: a default name
        name = kwargs.pop("name", None)
        if name is None:
            name = default_name
        if isinstance(func.module, UserModule):
            return self._call_user_module(func, args, kwargs, span, frame, name=name)
        return self._call_layer(func.module, f"nn.{func.module.name}", args, kwargs, span,
                                frame, dict(func.bound), name=name)

    def _scan(self: Resolver, args: list, kwargs: dict, expr: ir.Call, frame: Frame,
              written: str = "jax.lax.scan", step_what: str = "the scan step") -> Any:
        """`jax.lax.scan(step, init, xs)`: emitted as a real scan over a nested `def`.

        `written`, `step_what`: how messages name the call and its step (a
        `jax.lax.fori_loop` or `jax.lax.map` is a scan over a step made for it).
        """
        span = expr.span
        fn = frame.fn  # a module's function, or a function of arrays (a custom_vjp rule)
        if fn is None:
            raise self.error("AOT324", f"{written} can only be called inside a module's "
                             "apply", span)

        b = self._bind_signature("f, init, xs=None, length=None, reverse=False, unroll=1", "jax.lax.scan", args, kwargs, span)
        step, init, xs = b["f"], b["init"], b["xs"]
        step = self._scan_step(step, span, frame)
        # `jax.lax.map`'s scan carries nothing
        empty = isinstance(init, tuple) and not init
        if not empty:
            init = self._carry_numbers(init, span, fn)
        carry_in = [] if empty else self._flat_tensors(init, "init", span, written)
        xs_in = self._flat_tensors(xs, "xs", span, written) if xs is not None else []
        lengths = {t.shape[0] for t in xs_in if t.shape}
        length = b["length"]
        if any(not t.shape for t in xs_in) or len(lengths) > 1 or (
                length is not None and lengths and lengths != {length}):
            raise self.error("AOT361", f"{written}: xs must share one leading length, got "
                             f"{', '.join(t.describe() for t in xs_in)}", span)
        if not lengths and length is None:
            raise self.error("AOT361", f"{written} needs xs or length=", span)
        n = length if length is not None else lengths.pop()
        carry = rebuild(init, [fresh_like(t) for t in carry_in])
        x = None if xs is None else rebuild(xs, [fresh_row(t) for t in xs_in])
        outer_ops, outer_state = fn.ops, dict(fn.state_values)
        index = Tensor((), "int32")  # the step's position, should a random key need it
        fn.ops = []
        fn.scan_steps.append(index)
        try:
            result = self._call_closure(step, [carry, x], {}, span, frame)
            body = fn.ops
        finally:
            fn.ops = outer_ops
            fn.scan_steps.pop()
        if any(op.init_only or op.init_args is not None for op in body):
            raise self.error("AOT352", "parameters initialized from data inside "
                             f"{written} are not supported", step.span,
                             hint="create the layer before the scan (call it once on the "
                                  "first step's inputs) or give its parameters a shape")
        if fn.state_values != outer_state:
            fn.state_values = outer_state
            raise self.error("AOT362", "state updates (BatchNorm statistics, self.state) inside "
                             f"{written} are not supported yet", step.span)
        if id(index) in fn.used_steps:  # nn.make_rng() / dropout in the step: feed the index
            steps = Tensor((n,), "int32")
            fn.emit("ops/call.j2", {"call": Code((f"jnp.arange({n})",))}, (steps,), span,
                    "steps")
            xs, x = (steps, index) if xs is None else ((xs, steps), (x, index))
        if contains_poison(result):  # the step failed and said why: no second error
            raise Abort()
        if not (isinstance(result, tuple) and len(result) == 2):
            raise self.error("AOT363", "a scan step must return (new_carry, y)",
                             _name_span(step))
        new_carry, y = result
        carry_out = [] if empty and isinstance(new_carry, tuple) and not new_carry else \
            self._flat_tensors(new_carry, "new carry", step.span, written)
        if [(t.shape, t.dtype) for t in carry_out] != [(t.shape, t.dtype) for t in carry_in]:
            raise self.error(
                "AOT364", f"{step_what} must return a carry of the same types as init: got "
                f"{', '.join(t.describe() for t in carry_out)} for "
                f"{', '.join(t.describe() for t in carry_in)}", _name_span(step))
        ys = self._flat_tensors(y, "y", step.span, written) if y is not None else []
        p_carry, p_x = step.params.params[0].name, step.params.params[1].name
        carry_var, x_var = TreeVar("carry"), TreeVar("x")
        prologue = []
        for var, value, name in ((carry_var, carry, p_carry), (x_var, x, p_x)):
            leaves = tensors(value)
            if isinstance(value, (tuple, list)) and leaves:
                # unpacked on entry to the step: attributed to its `def` line
                prologue.append(Op("ops/module_call.j2", (("target", unpack_code(
                    value, value, [])), ("call", Code((var,)))), tuple(leaves), (), step.span,
                    name))
            elif isinstance(value, Tensor):
                fn.hint(value, name)
        inputs = tuple((name, value if isinstance(value, Tensor) else var)
                       for name, var, value in ((p_carry, carry_var, carry), (p_x, x_var, x)))
        nested = Function(
            name=self._function_name(step.name if step.name.isidentifier() else "step"),
            doc=f"{_STEP_DOCS.get(written, 'Scan step')} `{step.name}`",
            takes_params=False, state_collections=(), takes_rng=False, inputs=inputs,
            body=tuple(prologue + body), result=value_code(result),
            result_tensors=tuple(carry_out + ys), span=step.span, hints=dict(fn.hints))
        final = rebuild(init, [fresh_like(t) for t in carry_in])
        stacked = None if y is None else rebuild(
            y, [Tensor((n, *t.shape), t.dtype) for t in ys])
        outs = tensors(final) + tensors(stacked)
        produced = {id(v) for op in body for v in op.outputs} | {id(t) for t in tensors(carry)}
        produced |= {id(t) for t in tensors(x)}
        captures = [v for op in body for v in op.inputs() if id(v) not in produced]
        extra = "" if not b["reverse"] else ", reverse=True"
        extra += f", length={n}" if xs is None else ""
        if isinstance(b["unroll"], int) and not isinstance(b["unroll"], bool) and \
                b["unroll"] > 1:
            extra += f", unroll={b['unroll']}"
        fn.ops.append(Op("ops/scan.j2", (
            ("target", unpack_code((init, y), (final, stacked), [])),
            ("step", Code((FunctionRef(nested),))), ("init", value_code(init)),
            ("xs", value_code(xs)), ("extra", Code((extra,))),
            ("captures", Code(tuple(captures)))), tuple(outs), (), span, "scan", (nested,),
            OpInfo("jax.lax.scan", trips=n)))
        return (final, stacked)

    def _scan_step(self: Resolver, step: Any, span: Span, frame: Frame) -> Closure:
        """The step of a scan as a function `(carry, x) -> (carry, y)`.

        A `def` or lambda is used as it is.  A module (`nn.LSTMCell.partial(name="lstm")`,
        as old flax.nn code scans a cell) is called at every step with one set of
        parameters: it becomes a shared module of the enclosing scope, named as given.
        """
        if isinstance(step, Closure) and len([p for p in step.params.params
                                              if p.kind == "positional"]) >= 2:
            return step
        if isinstance(step, ModuleRef):
            step, name = step.split_name()
            fn, scope = self._need_module_frame(frame, span, "jax.lax.scan")
            cls_name = (step.module.linen_name or step.module.name) \
                if isinstance(step.module, Entry) else step.class_name
            try:
                child = scope.child_name(cls_name, name, span, shared=True)
            except CallError as e:
                raise self.error(e.code, e.message, span, hint=e.hint, notes=e.notes) from None
            step = SharedModule(step, scope, child, span)
        if isinstance(step, (SharedModule, OpRef)):
            env = Env(frame.env)
            env.set("_module", step)
            carry, x = ir.Name("carry", span), ir.Name("x", span)
            params = ir.Parameters((ir.Param("carry", None, None, "positional", span),
                                    ir.Param("x", None, None, "positional", span)), span)
            body = (ir.Return(ir.Call(ir.Name("_module", span), (carry, x), (), span), span),)
            return Closure("step", params, body, env, span)
        raise self.error("AOT360", "jax.lax.scan needs a step function (carry, x) -> "
                         f"(carry, y): a def, a lambda or a module, got {describe_value(step)}",
                         span)

    def _scan_in_dim(self: Resolver, args: list, kwargs: dict, expr: ir.Call, frame: Frame) -> Any:
        """`flax.jax_utils.scan_in_dim(body, init, xs, axis, keepdims=False)`.

        Flax's own definition: the scanned axis is moved to the front, `lax.scan` runs, and
        the stacked outputs get the axis back where it was.
        """

        b = self._bind_signature("body_fn, init, xs, axis=0, keepdims=False", "jax_utils.scan_in_dim", args, kwargs, expr.span)
        axis = b["axis"]
        axes = (axis,) if isinstance(axis, int) and not isinstance(axis, bool) else axis
        if not (isinstance(axes, tuple) and len(axes) == 1 and isinstance(axes[0], int)):
            raise self.error("AOT361", "jax_utils.scan_in_dim: only one scanned axis is "
                             f"supported, got axis={axis!r}", expr.span,
                             hint="reshape the axes into one first")
        moveaxis = REGISTRY.lookup("jnp", "moveaxis")
        step = b["body_fn"]
        if b["keepdims"]:
            raise self.error("AOT361", "jax_utils.scan_in_dim: keepdims=True is not supported",
                             expr.span, hint="add the axis inside the step with x[:, None]")
        moved = rebuild(b["xs"], [self._call_entry(moveaxis, "jnp.moveaxis", [t, axes[0], 0],
                                                    {}, expr.span, frame)
                                   for t in self._flat_tensors(b["xs"], "xs", expr.span)])
        final, ys = self._scan([step, b["init"], moved], {}, expr, frame)
        if ys is None:
            return final, ys
        back = rebuild(ys, [self._call_entry(moveaxis, "jnp.moveaxis", [t, 0, axes[0]], {},
                                              expr.span, frame) for t in tensors(ys)])
        return final, back

    def _fori_loop(self: Resolver, args: list, kwargs: dict, expr: ir.Call, frame: Frame) -> Any:
        """`jax.lax.fori_loop(lower, upper, body_fun, init_val)` with static bounds.

        jax lowers such a loop to a scan over the indices (which is why it can be
        differentiated in reverse); this emits that scan: a step `(val, i)` calling
        `body_fun(i, val)` over `jnp.arange(lower, upper)`.
        """

        span = expr.span
        b = self._bind_signature("lower, upper, body_fun, init_val, *, unroll=1", "jax.lax.fori_loop", args, kwargs, span)
        lower, upper, body = b["lower"], b["upper"], b["body_fun"]
        if any(isinstance(v, Tensor) for v in (lower, upper)) and all(
                isinstance(v, Tensor) or isinstance(v, int) and not isinstance(v, bool)
                for v in (lower, upper)):
            return self._dynamic_fori_loop(lower, upper, body, b["init_val"], expr, frame)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lower, upper)):
            raise self.error("AOT361", "jax.lax.fori_loop needs static integer bounds (a loop "
                             "whose trip count is an array's value is a while loop), got "
                             f"{describe_value(lower)} and {describe_value(upper)}", span,
                             hint="compute the bounds from shapes or hyperparameters")
        names = self._positional_names(body, ("i", "val"), "jax.lax.fori_loop",
                                       "body_fun(i, val) -> val", span)
        indices = self._call_entry(REGISTRY.lookup("jnp", "arange"), "jnp.arange",
                                   [lower, upper], {"dtype": DType("int32")}, span, frame)
        step = self._step_calling(body, (names[1], names[0]), (names[0], names[1]), None, span,
                                  frame)
        final, _ = self._scan([step, b["init_val"], indices], {"unroll": b["unroll"]}, expr,
                              frame, "jax.lax.fori_loop", "the fori_loop body")
        return final

    def _lax_map(self: Resolver, args: list, kwargs: dict, expr: ir.Call, frame: Frame) -> Any:
        """`jax.lax.map(f, xs)`: jax's definition, a scan carrying nothing whose step
        returns `f(x)`."""

        span = expr.span
        b = self._bind_signature("f, xs", "jax.lax.map", args, kwargs, span)
        names = self._positional_names(b["f"], ("x",), "jax.lax.map", "f(x)", span)
        step = self._step_calling(b["f"], ("_", names[0]), (names[0],), (), span, frame)
        _, ys = self._scan([step, (), b["xs"]], {}, expr, frame, "jax.lax.map",
                           "the mapped function")
        return ys

    def _tree_map(self: Resolver, args: list, kwargs: dict, expr: ir.Call, frame: Frame) -> Any:
        """`jax.tree_util.tree_map(f, tree, *rest)`: `f` called on each leaf (with the
        leaves at the same place in `rest`), in a tree of the same structure.  The structure
        is static, so the walk happens at build time and the calls are emitted in jax's
        leaf order (dicts by sorted key)."""

        span = expr.span
        b = self._bind_signature("f, tree, *rest, is_leaf=None", "jax.tree_util.tree_map", args, kwargs, span)
        if b["is_leaf"] is not None:
            raise self.error("AOT203", "jax.tree_util.tree_map: is_leaf= is not supported",
                             span)
        f = b["f"]

        def walk(tree: Any, rest: list, path: str) -> Any:
            for other in rest:
                if not _same_node(tree, other):
                    raise self.error("AOT203", "jax.tree_util.tree_map: the trees differ "
                                     f"at {path or 'the root'}: {describe_value(tree)} and "
                                     f"{describe_value(other)}", span)
            if isinstance(tree, dict):
                return {k: walk(tree[k], [o[k] for o in rest], f"{path}[{k!r}]")
                        for k in sorted(tree)}
            if isinstance(tree, (tuple, list)):
                items = [walk(v, [o[i] for o in rest], f"{path}[{i}]")
                         for i, v in enumerate(tree)]
                if isinstance(tree, RecordTuple):
                    return RecordTuple.make(tree.cls, items)
                return tuple(items) if isinstance(tree, tuple) else items
            if tree is None:  # a node without children, as in jax
                return None
            return self._call(f, [tree, *rest], {}, expr, frame)

        return walk(b["tree"], list(b["rest"]), "")

    def _tree_leaves(self: Resolver, args: list, kwargs: dict, span: Span) -> list:
        """`jax.tree_util.tree_leaves(tree)`: its leaves in jax's order (dicts by sorted
        key, None no leaf)."""
        if len(args) != 1 or set(kwargs) - {"is_leaf"} or kwargs.get("is_leaf") is not None:
            raise self.error("AOT304", "jax.tree_util.tree_leaves takes one tree here", span)
        return [v for v in result_leaves(args[0]) if v is not None]

    def _positional_names(self: Resolver, func: Any, names: tuple[str, ...], written: str,
                          shape: str, span: Span) -> tuple[str, ...]:
        """The names of the first positional parameters of `func`, the function given to
        `written` (which calls it as `shape`); `names` (their count) for a function that is
        not the model file's (`nn.relu`)."""
        if not isinstance(func, Closure):
            return names
        params = [p.name for p in func.params.params if p.kind == "positional"]
        if len(params) < len(names) and not any(p.kind == "vararg" for p in func.params.params):
            raise self.error("AOT360", f"{written} needs a function {shape}, got "
                             f"{describe_value(func)}", span)
        return tuple(params[:len(names)]) if len(params) >= len(names) else names

    def _step_calling(self: Resolver, func: Any, params: tuple[str, str],
                      passed: tuple[str, ...], carry: Any, span: Span, frame: Frame) -> Closure:
        """A scan step `(params[0], params[1])` calling `func` with the parameters named in
        `passed`: it returns `(func(...), None)`, or with a `carry` given (`()`), `(carry,
        func(...))`.  Its parameters keep the names of `func`'s, so the emitted step reads
        like the function given."""
        if isinstance(func, Closure):
            span, name = func.span, func.name
        else:
            name = "step"
        env = Env(frame.env)
        env.set("_loop_fn", func)
        call = ir.Call(ir.Name("_loop_fn", span), tuple(ir.Name(n, span) for n in passed), (),
                       span)
        result = ir.TupleExpr((call, ir.Constant(None, span)) if carry is None
                              else (ir.TupleExpr((), span), call), span)
        step_params = ir.Parameters(tuple(ir.Param(n, None, None, "positional", span)
                                          for n in params), span)
        return Closure(name, step_params, (ir.Return(result, span),), env, span)

    def _carry_numbers(self: Resolver, init: Any, span: Span, fn: Any) -> Any:
        """A scan's `init` with its Python numbers made arrays, as jax.lax.scan makes them
        (`init=(0, state)` of Flax's seq2seq example counts steps in its carry: a weakly
        typed int32, as `jnp.asarray(0)` gives)."""
        leaves = tensor_leaves(init)
        if not any(type(v) in (int, float, bool) for v in leaves):
            return init

        def as_array(v: Any) -> Any:
            aval = aval_of(v) if type(v) in (int, float, bool) else None
            if aval is None:
                return v
            t = Tensor(*aval)
            fn.emit("ops/call.j2", {"call": Code.of("jnp.asarray(", value_code(v), ")")},
                    (t,), span, "carry")
            return t

        def go(v: Any) -> Any:
            if isinstance(v, RecordTuple):
                return RecordTuple.make(v.cls, [go(x) for x in v])
            if isinstance(v, tuple):
                return tuple(go(x) for x in v)
            if isinstance(v, list):
                return [go(x) for x in v]
            return as_array(v)
        return go(init)

    def _flat_tensors(self: Resolver, value: Any, what: str, span: Span,
                      written: str = "jax.lax.scan") -> list[Tensor]:
        if contains_poison(value):  # reported where it failed
            raise Abort()
        leaves = tensor_leaves(value)
        if not leaves or not all(isinstance(v, Tensor) for v in leaves):
            raise self.error("AOT361", f"{written}: {what} must be an array or a tuple of "
                             f"arrays, got {describe_value(value)}", span)
        return leaves

    def _sequential(self: Resolver, args: list, kwargs: dict, expr: ir.Call) -> "Sequential":
        """`nn.Sequential([...])`: layers applied in order, named in the enclosing scope."""
        if len(args) != 1 or kwargs or not isinstance(args[0], (list, tuple)):
            raise self.error("AOT355", "nn.Sequential takes one list of layers", expr.span)
        for layer in args[0]:
            if not isinstance(layer, (ModuleRef, OpRef, Closure, SharedModule, Sequential,
                                      Partial)):
                raise self.error("AOT355", f"nn.Sequential layers must be modules (e.g. "
                                 f"nn.Dense.partial(features=8)) or functions, got "
                                 f"{describe_value(layer)}", expr.args[0].span)
        return Sequential(tuple(args[0]))

    def _call_entry(self: Resolver, entry: Entry | None, written: str, args: list, kwargs: dict,
                    span: Span, frame: Frame) -> Any:
        if entry is None:
            raise InternalError(f"missing operation for {written}", span=span)
        if entry.kind != "layer" and frame.fn is None:
            if self.import_time:
                raise ImportTimeSignal()
            raise self.error("AOT324", f"{written} can only be used inside a module's apply",
                             span, hint=self._top_level_array_hint())
        return self._call_layer(entry, written, args, kwargs, span, frame)

    def _call_shared(self: Resolver, shared: SharedModule, args: list, kwargs: dict, span: Span,
                     frame: Frame) -> Any:
        if "name" in kwargs:
            raise self.error("AOT310", "a shared module is named where it is created", span)
        fn, _ = self._need_module_frame(frame, span, shared.ref.class_name)
        if self._shared_instance(shared).fn is not fn:
            raise self.error("AOT315", "this shared module reached the module calling it "
                             "inside a value that cannot carry it", span,
                             notes=(Note("created here", shared.span),),
                             hint="pass the shared module to the module that calls it as an "
                                  "argument (alone, or in a tuple, list or dict)")
        shared.calls += 1
        if isinstance(shared.ref.module, UserModule):
            return self._call_user_module(shared.ref, args, kwargs, span, frame, shared=shared)
        return self._call_layer(shared.ref.module, f"nn.{shared.ref.class_name}", args, kwargs,
                                span, frame, dict(shared.ref.bound), shared=shared)

    def _call_closure(self: Resolver, fn: Closure, args: list, kwargs: dict, span: Span,
                      frame: Frame) -> Any:
        # a method's defaults (not evaluated at its `def`) are read in its own file's names
        bound = self._bind(fn.params, args, kwargs, fn.name, span, defaults=fn.defaults,
                           defaults_env=fn.env)
        env = Env(fn.env)
        for k, v in bound.items():
            env.set(k, v)
        self.depth += 1
        if self.depth > MAX_CALL_DEPTH:
            self.depth -= 1
            raise self.error("AOT322", f"function {fn.name} recurses too deeply", span)
        errors = self.errors
        self.calls.append((f"{fn.name}, called here", span))
        try:
            self._exec_block(fn.body, Frame(env, frame.fn, frame.scope, frame.module))
        except ReturnSignal as r:
            if self.errors != errors:
                raise Abort() from None
            return r.value
        finally:
            self.depth -= 1
            self.calls.pop()
        if self.errors != errors:
            raise Abort()
        return None

    def _map_filter(self: Resolver, name: str, args: list, kwargs: dict, expr: ir.Call,
                    frame: Frame) -> list:
        """`map(f, *iterables)` and `filter(f, iterable)` over static sequences, unrolled.

        `f` is any callable of the model file (a def, a lambda, jnp.tanh, a module);
        its results may be arrays, whose code is emitted.  filter's conditions must be
        static.  Both give a list (Python's lazy iterator, consumed at once).
        """
        span = expr.span
        if kwargs or len(args) < 2 or (name == "filter" and len(args) != 2):
            form = "map(function, iterable, ...)" if name == "map" else \
                "filter(function, iterable)"
            raise self.error("AOT349", f"{name}() takes {form}", span)
        func, iterables = args[0], [list(self._iterate(a, span)) for a in args[1:]]
        out: list = []
        for items in zip(*iterables):
            self._step(span)
            if len(out) >= MAX_UNROLL:
                raise self.error("AOT330", f"{name}() is too long to unroll", span)
            if name == "map":
                out.append(self._call(func, list(items), {}, expr, frame))
                continue
            keep = items[0] if func is None else self._call(func, [items[0]], {}, expr, frame)
            if isinstance(keep, Poison):
                raise Abort()
            if not is_static(keep):
                raise self.error("AOT335", f"filter's condition must be static, got "
                                 f"{describe_value(keep)}", span,
                                 hint="use jnp.where(cond, a, b) to select values elementwise")
            if keep:
                out.append(items[0])
        return out

    def _sum_arrays(self: Resolver, args: list, kwargs: dict, span: Span, frame: Frame) -> Any:
        """`sum(np.eye(n, k=i) for i in range(w))`, `sum(losses)`: Python's sum over arrays
        (or numpy arrays) is `start + items[0] + items[1] + ...`, each `+` the array operator
        (`start` is 0 unless given, as in Python)."""
        if len(args) not in (1, 2) or set(kwargs) - {"start"} or (len(args) == 2 and kwargs):
            raise self.error("AOT349", "sum() takes an iterable and an optional start", span)
        items = args[0]
        if not isinstance(items, (list, tuple)):
            raise self.error("AOT349", f"sum() of {describe_value(items)}: only a list or "
                             "tuple of arrays is summed at build time", span,
                             hint="use jnp.sum(x, axis=0) to add the rows of an array")
        total = args[1] if len(args) == 2 else kwargs.get("start", 0)
        for item in items:
            total = self._binop("+", total, item, span, frame)
        return total

    def _call_static(self: Resolver, fn: StaticBuiltin, args: list, kwargs: dict, span: Span) -> Any:
        if fn.name in ("sorted", "min", "max", "any", "all") and len(args) == 1 and \
                isinstance(args[0], dict):
            args = [list(args[0])]  # a dict iterates its keys, which are static
        for a in list(args) + list(kwargs.values()):
            if not is_static(a) and fn.name not in (
                    "len", "tuple", "list", "enumerate", "zip", "reversed", "isinstance", "dict") \
                    and not (fn.name.startswith("itertools.") and
                             fn.name != "itertools.accumulate"):  # these only arrange items
                raise self.error("AOT349", f"{fn.name}() is evaluated at build time and needs "
                                 f"static arguments, got {describe_value(a)}", span,
                                 hint="use the jnp function for arrays (jnp.maximum, ...)")
        if fn.name == "len" and args and isinstance(args[0], Tensor):
            if not args[0].shape:
                raise self.error("AOT349", "len() of a 0-d array", span)
            return args[0].shape[0]
        if fn.name == "isinstance":
            return self._isinstance(args, kwargs, span)
        if fn.name in ("tuple", "list", "enumerate", "zip", "reversed", "sorted"):
            # a numpy array of static ints (`tuple(np.delete(range(n), axes))`) gives its
            # items; other arrays cannot be iterated at build time (a located error)
            args = [list(self._iterate(a, span)) if isinstance(a, Tensor) else a
                    for a in args]
        if fn.name == "range" and range_too_long(args):
            raise self.error("AOT330", f"range{tuple(args)} is too long to unroll (more than "
                             f"{MAX_UNROLL:,} items)", span)
        read = self._builtin_read(fn.name, args, kwargs, span)
        try:
            result = fn.fn(*args, **kwargs)
            if fn.name.startswith("itertools."):  # bounded before it is made whole
                result = list(itertools.islice(result, MAX_UNROLL + 1))
                if len(result) > MAX_UNROLL:
                    raise self.error("AOT330", f"{fn.name}() is too long to unroll (more than "
                                     f"{MAX_UNROLL:,} items)", span)
            if fn.name in ("range", "enumerate", "zip", "reversed", "map", "filter"):
                result = list(result)  # lazy ones fail here (map over a model function)
        except Exception as e:  # a static builtin failed on user values
            raise self.error("AOT349", f"{fn.name}(): {e}", span,
                             hint="use a comprehension to apply a function of the model file"
                             if fn.name in ("map", "filter", "sorted", "min", "max") else
                             None) from None
        if isinstance(result, BaseException):
            return result
        if fn.name in ("range", "enumerate", "zip", "reversed", "map", "filter"):
            if len(result) > MAX_UNROLL:
                raise self.error("AOT330", f"{fn.name}() is too long to unroll", span)
        return self._static_result(result, span, read)

    def _isinstance(self: Resolver, args: list, kwargs: dict, span: Span) -> bool:
        """`isinstance(num_layers, list)` on a static value and the builtin types (a config
        made robust to a list where a tuple was meant); an array is none of them."""
        if kwargs or len(args) != 2:
            raise self.error("AOT349", "isinstance takes a value and a type", span)
        value, info = args
        types: list[type] = []
        array_abcs = False
        records = []
        for kind in info if isinstance(info, tuple) else (info,):
            if isinstance(kind, RecordClass):  # a dataclass, attrs class or namedtuple
                records.append(kind)
                continue
            if isinstance(kind, AbstractType):
                types.append(getattr(collections.abc, kind.name))
                array_abcs = array_abcs or kind.name in _ARRAY_ABCS
                continue
            found = _STATIC_TYPES.get(kind.name) if isinstance(kind, StaticBuiltin) else None
            if found is None:
                raise self.error(
                    "AOT349", f"isinstance(..., {describe_value(kind)}): only the builtin types "
                    f"{', '.join(_STATIC_TYPES)}, the classes of collections.abc and the model "
                    "file's dataclasses, attrs classes and namedtuples are types at build time",
                    span,
                    hint="compare static values, or give the value as a hyperparameter")
            types.append(found)
        if isinstance(value, Poison):
            raise Abort()
        if isinstance(value, Tensor):
            return array_abcs
        if isinstance(value, (Record, RecordTuple)) and any(
                value.cls.derives_from(r) for r in records):
            return True
        abstract = [t for t in types if t.__module__ == "collections.abc"]
        if abstract and not isinstance(value, (tuple, list, dict, str, int, float, type(None))):
            raise self.error("AOT349", f"isinstance({describe_value(value)}, "
                             f"collections.abc.{abstract[0].__name__}) is not known at build "
                             "time: the classes of collections.abc take arrays and Python's "
                             "numbers, strings, tuples, lists and dicts", span)
        return isinstance(value, tuple(types))

    def _builtin_read(self: Resolver, name: str, args: list, kwargs: dict, span: Span) -> int:
        """What a static builtin reads, charged before it runs; refuses calls whose work or
        result no size check after the call could stop (a huge product, sum or rounding)."""
        values = [*args, *kwargs.values()]
        if name in ("sorted", "min", "max", "repr", "str", "sum", "any", "all"):
            read = self._deep_read(values, span, f"{name}()")
        else:
            read = sum(static_size(v) for v in values) if name != "len" else 0
        items = args[0] if args and isinstance(args[0], (list, tuple, dict, str)) else ()
        if name == "round" and len(args) == 2 and isinstance(args[0], int) and \
                isinstance(args[1], int) and -args[1] > MAX_STATIC_BITS // 3:
            raise self.error("AOT330", f"round(..., {shown(args[1])}) is too large to compute "
                             "at build time", span)
        if name == "prod" and sum(v.bit_length() for v in items if isinstance(v, int)) > \
                MAX_STATIC_BITS:
            raise self.error("AOT330", "math.prod() of these ints is too large to compute at "
                             "build time", span)
        start = args[1] if len(args) > 1 else kwargs.get("start", 0)
        if name == "sum" and (isinstance(start, (list, tuple)) or any(
                isinstance(v, (list, tuple)) for v in items)):
            # sum(seqs, []) copies its partial result at every item: quadratic
            total = static_size(start) + sum(static_size(v) for v in items)
            if total > MAX_STATIC_LEN:
                raise self.error("AOT330", f"sum() would build a sequence of {total:,} items "
                                 f"(at most {MAX_STATIC_LEN:,})", span)
            read += len(items) * total
        self._static_result(None, span, read)  # charge before running
        return 0

    def _make_initializer(self: Resolver, factory: InitializerFactory, args: list, kwargs: dict,
                          span: Span) -> Initializer:
        from ..ops.registry import Signature

        sig = Signature.parse(inits.FACTORIES[factory.name])
        try:
            bound = sig.bind(f"nn.initializers.{factory.name}", args, kwargs)
            for name, v in bound.items():
                if not is_static(v):
                    raise CallError(
                        "AOT203", f"nn.initializers.{factory.name}: {name} must be known at "
                        f"build time, got {describe_value(v)}",
                        _ARRAY_ARGUMENT_HINT if isinstance(v, Tensor) else None)
            return inits.make(factory.name, args, kwargs)
        except (CallError, StaticError) as e:
            raise self.error(getattr(e, "code", "AOT203"), getattr(e, "message", str(e)),
                             span, hint=getattr(e, "hint", None)) from None

    def _call_method(self: Resolver, m: BoundMethod, args: list, kwargs: dict, expr: ir.Call,
                     frame: Frame) -> Any:
        r, span = m.receiver, expr.span
        if isinstance(r, ModuleRef) and m.name == "partial":
            if args:
                raise self.error("AOT350", "partial takes keyword arguments only", span)
            return r.with_bound(kwargs, span)
        if isinstance(r, ModuleRef) and m.name == "call":
            return self._module_call(r, args, kwargs, span, frame)
        if isinstance(r, SuperLayer) and m.name == "param":
            return self._super_param(r, args, kwargs, span)
        if isinstance(r, ModuleRef) and m.name == "shared":
            # flax.nn's shared module is named by `shared(name=...)` alone, never by a
            # name its partial bound
            r = r.split_name()[0]
            name = kwargs.pop("name", None)
            if args:
                raise self.error("AOT350", "shared takes keyword arguments only", span)
            fn, scope = self._need_module_frame(frame, span, f"{r.class_name}.shared")
            cls_name = (r.module.linen_name or r.module.name) if isinstance(r.module, Entry) \
                else r.class_name
            try:
                child = scope.child_name(cls_name, name, span, shared=True)
            except CallError as e:
                raise self.error(e.code, e.message, span, hint=e.hint, notes=e.notes) from None
            return SharedModule(r.with_bound(kwargs, span), scope, child, span)
        static = REGISTRY.lookup(f"nn.{r.module.name}", m.name) \
            if isinstance(r, ModuleRef) and isinstance(r.module, Entry) else None
        if static is not None and static.kind == "function":
            # A built-in layer's static method: nn.LSTMCell.initialize_carry(rng, (8,), 16).
            return self._call_entry(static, f"nn.{r.module.name}.{m.name}", args, kwargs, span,
                                    frame)
        if isinstance(r, SharedModule):
            return self._shared_method(r, m.name, args, kwargs, span, frame)
        if isinstance(r, CustomJvp):
            return self._custom_jvp_method(r, m.name, args, kwargs, span)
        if isinstance(r, CustomVjp):
            return self._custom_vjp_method(r, m.name, args, kwargs, span)
        if isinstance(r, (AttentionCache, CacheEntry)):
            return self._cache_method(r, m.name, args, kwargs, span, frame)
        if isinstance(r, SelfValue):
            return self._self_method(r, m.name, args, kwargs, span, frame)
        if isinstance(r, SuperModule):
            return self._super_method(r, m.name, args, kwargs, span, frame)
        if isinstance(r, HostArray):
            return self._host_method(r, m.name, args, kwargs, span, frame)
        if isinstance(r, (ConfigValue, Record, RecordTuple)):
            return self._record_method(r, m.name, args, kwargs, span, frame)
        if isinstance(r, Tensor):
            if m.name == "T":
                raise self.error("AOT348", "x.T is an attribute, not a method", span)
            entry = REGISTRY.lookup("array", m.name)
            return self._call_entry(entry, f"x.{m.name}", [r, *args], kwargs, span, frame)
        if isinstance(r, (list, dict, str)):
            return self._static_method(r, m.name, args, kwargs, span)
        if isinstance(r, Traversal):
            return training.traversal_method(self, r, m.name, args, kwargs, expr, frame)
        if isinstance(r, AtIndex):  # x.at[index].set(values)
            return self._call_entry(REGISTRY.lookup("at", m.name), f"x.at[...].{m.name}",
                                    [r.operand, r.index, *args], kwargs, span, frame)
        if isinstance(r, ModuleRef) and isinstance(r.module, UserModule):
            self._check_method_usable(r.module, m.name, span)  # `Net.loss(...)`, a classmethod
        raise self.error("AOT348", f"{describe_value(r)} has no method '{m.name}'", span)

    def _static_method(self: Resolver, r: Any, name: str, args: list, kwargs: dict, span: Span) -> Any:
        methods: dict[type, set[str]] = {
            list: {"append", "extend", "insert", "pop", "index", "count", "copy", "reverse"},
            dict: {"get", "items", "keys", "values", "update", "copy", "pop", "setdefault"},
            str: {"format", "join", "upper", "lower", "startswith", "endswith", "replace",
                  "split", "strip"},
        }
        allowed = methods[type(r)]
        if name not in allowed:
            raise self.error("AOT348", f"method {type(r).__name__}.{name} is not supported",
                             span)
        if name == "format":
            problem = safety.format_problem(r) or (
                "a replacement field inside a format spec ({:{}}) is not supported"
                if format_nested(r) else None)
            if problem:
                raise self.error("AOT341", f"str.format: {problem}", span)
        read = self._method_read(r, name, args, kwargs, span)
        try:
            result = getattr(r, name)(*args, **kwargs)
        except Exception as e:
            raise self.error("AOT349", f"{type(r).__name__}.{name}(): {e}", span) from None
        if name in ("items", "keys", "values"):
            result = list(result)
        self._static_result(r, span, built=False)  # a list or dict the method grew
        return self._static_result(result, span, read)

    def _method_read(self: Resolver, r: Any, name: str, args: list, kwargs: dict, span: Span) -> int:
        """What a static method reads; refuses calls whose result would be too large."""
        if name in ("append", "get", "setdefault", "copy") or name == "pop" and not args:
            return sum(static_size(a) for a in args)  # no scan of the receiver
        if name == "replace" and isinstance(r, str) and len(args) >= 2 and all(
                isinstance(a, str) for a in args[:2]):
            count = args[2] if len(args) > 2 and isinstance(args[2], int) else -1
            grown = replace_size(r, args[0], args[1], count)
            if grown > MAX_STATIC_LEN:
                raise self.error("AOT330", f"str.replace() would build a string of {grown:,} "
                                 f"characters (at most {MAX_STATIC_LEN:,})", span)
        if name in ("extend", "update") and args and isinstance(args[0], (list, tuple, dict)):
            grown = len(r) + len(args[0])
            if grown > MAX_STATIC_LEN:
                raise self.error("AOT330", f"{type(r).__name__}.{name}() would make a "
                                 f"{type(r).__name__} of {grown:,} items (at most "
                                 f"{MAX_STATIC_LEN:,})", span)
        if name == "join" and isinstance(r, str) and args and isinstance(args[0], (list, tuple)):
            total = sum(len(a) for a in args[0] if isinstance(a, str)) + \
                len(r) * len(args[0])
            if total > MAX_STATIC_LEN:
                raise self.error("AOT330", f"str.join() would build a string of {total:,} "
                                 f"characters (at most {MAX_STATIC_LEN:,})", span)
        deep = name in ("format", "index", "count", "join")  # reads its arguments whole
        read = static_size(r) + (self._deep_read([*args, *kwargs.values()], span,
                                                  f"{type(r).__name__}.{name}()") if deep
                                  else sum(static_size(a) for a in args))
        self._static_result(None, span, read)  # charge before running
        return 0

    def _self_attribute(self: Resolver, r: SelfValue, attr: str, span: Span, frame: Frame) -> Any:
        """`self.x`: an attribute set earlier in this call, or a method of the module."""
        if attr in r.attrs:
            return r.attrs[attr]
        module = frame.module.module if frame.module is not None else None
        if attr in SELF_METHODS or (isinstance(module, UserModule)
                                    and module.method(attr) is not None):
            return BoundMethod(r, attr, span)
        if isinstance(module, UserModule) and attr in module.attributes:
            return self._class_value(module.attributes[attr], span, frame)  # a class attribute
        if attr.startswith("_"):  # `self._get_construction_frame()`: flax.nn's internals
            raise self.error(
                "AOT346", f"self.{attr} is not set in this call of "
                f"{module.name if isinstance(module, UserModule) else 'the module'}, and "
                "flax.nn's private Module machinery is not part of aotflax", span,
                hint="pass what it would give as a hyperparameter of apply")
        raise self.error(
            "AOT346", f"self.{attr} is not set in this call of "
            f"{module.name if isinstance(module, UserModule) else 'the module'}", span,
            hint=f"assign it first (self.{attr} = value) earlier in this call; values that "
                 "must persist between calls are parameters (self.param) or state "
                 "(self.state)")

    def _set_self_attribute(self: Resolver, r: SelfValue, attr: str, value: Any, span: Span,
                            frame: Frame) -> None:
        """`self.x = value`: a per-call attribute (old flax.nn makes a module object per call)."""
        module = frame.module.module if frame.module is not None else None
        if attr in SELF_METHODS or (isinstance(module, UserModule)
                                    and module.method(attr) is not None):
            raise self.error("AOT331", f"cannot set self.{attr}: it is a method of the module",
                             span, hint="give the attribute another name")
        r.attrs[attr] = value
        if frame.fn is not None:
            frame.fn.hint(value, attr)

    def _self_method(self: Resolver, r: SelfValue, name: str, args: list, kwargs: dict, span: Span,
                     frame: Frame) -> Any:
        scope: Scope = r.scope
        fn = scope.fn
        if fn is not frame.fn:
            raise self.error("AOT353", f"self.{name} of one module is called inside another "
                             "module", span, hint="call it in its own module and pass the "
                             "arrays it computes")
        if name == "param":
            try:
                from ..ops.registry import Signature

                # flax.nn's `Module.param(name, shape, initializer)`, its keyword names too
                b = Signature.parse("name, shape, initializer, dtype=None").bind(
                    "self.param", args, kwargs)
                pname, shape, init = b["name"], b["shape"], b["initializer"]
                if not isinstance(pname, str):
                    raise CallError("AOT351", f"self.param name must be a string, got "
                                    f"{describe_value(pname)}")
                check_name(pname, "parameter name")
                dtype = b["dtype"].name if isinstance(b["dtype"], DType) else "float32"
                if shape is None or self._reads_module_arrays(init, frame):
                    if pname in scope.used:
                        raise CallError("AOT311", f"'{pname}' is already used in this module")
                    value = self._param_from_data(scope, pname, shape, init, dtype, span, frame)
                    scope.used[pname] = span
                    return value
                if not (isinstance(shape, (tuple, list)) and all(
                        isinstance(d, int) and not isinstance(d, bool) and d >= 0
                        for d in shape)):
                    linen = isinstance(shape, (Initializer, InitializerFactory, Closure)) and \
                        isinstance(init, (tuple, list))
                    raise CallError("AOT351", f"self.param shape must be a tuple of ints, got "
                                    f"{describe_value(shape)}", hint=(
                                        "did you mean self.param(name, shape, initializer)? That is "
                                        "the flax.nn order; Linen's is (name, init, shape)"
                                        if linen else None))
                if pname in scope.used:
                    raise CallError("AOT311", f"'{pname}' is already used in this module")
                code, dtype = self._declare_param(scope, pname, tuple(shape), dtype, init, span,
                                                  adopt=b["dtype"] is None)
            except CallError as e:
                raise self.error(e.code, e.message, span, hint=e.hint, notes=e.notes) from None
            scope.used[pname] = span
            out = Tensor(tuple(shape), dtype)
            fn.emit("ops/call.j2", {"call": code}, (out,), span, pname)
            return out
        if name == "get_param":
            return self._get_param(scope, args, kwargs, span)
        if name in ("is_initializing", "is_stateful"):
            # `init` only runs initializers (no forward pass): the forward is never
            # initializing; and apply always takes `state` and returns the new state, as
            # flax.nn's model did inside `with nn.stateful(state)`: it is always stateful
            if args or kwargs:
                raise self.error("AOT301", f"self.{name}() takes no arguments", span)
            return name == "is_stateful"
        if name == "state":
            return self._user_state(scope, args, kwargs, span)
        module = frame.module.module if frame.module is not None else None
        method = module.method(name) if isinstance(module, UserModule) else None
        static = module.static_method(name) if isinstance(module, UserModule) else None
        if isinstance(module, UserModule) and method is not None:
            self._check_method_usable(module, name, span)
        if static is not None:
            return self._call_closure(static, args, kwargs, span, frame)
        made = module.class_method(name, frame.module) if isinstance(module, UserModule) \
            else None
        if made is not None:  # `self.make(...)`: a @classmethod, with the module's class
            return self._call_closure(made, args, kwargs, span, frame)
        if isinstance(module, UserModule) and method is not None and name != "apply":
            # Another method of this module: runs in the same scope, sharing parameters.
            env_self = Env(module.globals_of(name))
            env_self.set(method.params.params[0].name, r)
            self._bind_super(env_self, module, name, r)
            params = ir.Parameters(method.params.params[1:], method.params.span)
            closure = Closure(name, params, method.body, env_self, method.span, method)
            return self._call_closure(closure, args, kwargs, span, frame)
        if scope.fn is not frame.fn:
            raise self.error("AOT353", f"self.{name} of another module is called here: a "
                             "module's methods run inside that module", span,
                             hint="pass a function of the model file (def or lambda) instead")
        raise self.error("AOT353", f"self.{name} is not supported", span,
                         hint="modules support self.param, self.state, self.get_param and "
                              "calls to their own methods")

    def _user_state(self: Resolver, scope: Scope, args: list, kwargs: dict, span: Span) -> StateVariable:
        """`self.state(name, shape=(), init=zeros, dtype=float32, collection="state")`."""
        from ..ops.registry import Signature

        try:
            b = Signature.parse("name, shape=(), init=None, dtype=None, collection='state'").bind(
                "self.state", args, kwargs)
            name, shape, coll = b["name"], b["shape"], b["collection"]
            if coll is None:  # flax.nn's default: the collection of the enclosing `stateful`
                coll = "state"
            if not isinstance(name, str) or not name:
                raise CallError("AOT351", "self.state name must be a non-empty string")
            check_name(name, "state variable name")
            if not (isinstance(shape, (tuple, list)) and all(
                    isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
                raise CallError("AOT351", f"self.state shape must be a tuple of ints, got "
                                f"{describe_value(shape)}")
            problem = quoting.identifier_problem(coll, "state collection name")
            if problem or coll in NOT_COLLECTIONS:
                raise CallError("AOT356", problem or f"state collection name {coll!r} is taken "
                                "in generated code", hint="use an identifier such as 'state' or "
                                "'cache' (not 'params', 'rng', 'jnp' or a builtin)")
            dtype = b["dtype"].name if isinstance(b["dtype"], DType) else "float32"
            if name in scope.used:
                raise CallError("AOT311", f"'{name}' is already used in this module",
                                notes=(Note("first used here", scope.used[name]),))
            scope.state(coll, name, tuple(shape), dtype, b["init"] or inits.ZEROS, span)
        except CallError as e:
            raise self.error(e.code, e.message, span, hint=e.hint, notes=e.notes) from None
        scope.used[name] = span
        return StateVariable(scope, coll, name, tuple(shape), dtype, span)

    def _state_write(self: Resolver, var: StateVariable, value: Any, span: Span) -> None:
        if isinstance(value, Poison):
            raise Abort()
        if not isinstance(value, Tensor) and isinstance(value, (int, float, bool)):
            const = Tensor(var.shape, var.dtype)
            var.scope.fn.emit("ops/call.j2", {"call": Code((
                f"jnp.full({tuple_code(var.shape)}, {quoting.literal(value)}, "
                f"jnp.{var.dtype})",))},
                (const,), span, var.name)
            value = const
        if not isinstance(value, Tensor) or isinstance(value, RngKey):
            raise self.error("AOT313", f"state '{var.name}' must be assigned an array, got "
                             f"{describe_value(value)}", span)
        var.scope.fn.hint(value, var.name)
        try:
            var.write(value, span)
        except CallError as e:
            raise self.error(e.code, e.message, span, hint=e.hint, notes=e.notes) from None

    def _declare_param(self: Resolver, scope: Scope, name: str, shape: tuple[int, ...],
                       dtype: str, init: Any, span: Span, adopt: bool) -> tuple[Code, str]:
        """`self.param`'s declaration and its dtype: without `dtype=`, a flax.nn
        initializer `(key, shape)` gives the parameter the dtype it returns."""
        previous, self.adopt_dtype = self.adopt_dtype, adopt
        try:
            return scope.param(name, shape, dtype, init, span), dtype
        except AdoptDtype as a:
            adopted = a.dtype
        finally:
            self.adopt_dtype = previous
        return scope.param(name, shape, adopted, init, span), adopted

    def _get_param(self: Resolver, scope: Scope, args: list, kwargs: dict, span: Span) -> Any:
        """`self.get_param(name)`: a parameter, or a submodule's parameter dict, of this scope."""
        if len(args) != 1 or kwargs or not isinstance(args[0], str):
            raise self.error("AOT354", "self.get_param takes one name: self.get_param(\"embed\")",
                             span)
        name = args[0]
        prefix = scope.prefix + (name,)
        found = {p[len(prefix):]: d for p, d in scope.fn.params.items()
                 if p[:len(prefix)] == prefix}
        if not found:  # declared by the instance's `apply` before this method was called
            for p, d in scope.fn.known.items():
                if p[:len(prefix)] == prefix:
                    decl = ParamDecl(p, d.shape, d.dtype, d.init, d.span, d.from_data)
                    found[p[len(prefix):]] = scope.fn.params[p] = decl
        if not found:
            known = sorted({p[len(scope.prefix)] for p in scope.fn.params
                            if p[:len(scope.prefix)] == scope.prefix and len(p) > len(
                                scope.prefix)})
            raise self.error("AOT354", f"no parameter or submodule '{name}' has been declared "
                             f"in {scope.owner} before this line", span,
                             hint=f"declared so far: {', '.join(known) or 'none'}; create the "
                                  "layer (e.g. with .shared(name=...)) before reading it")
        tree: Any = {}
        for rel, decl in found.items():
            out = Tensor(decl.shape, decl.dtype)
            scope.fn.emit("ops/call.j2", {"call": Code((subscript_path("params", decl.path),))},
                          (out,), span, (rel[-1] if rel else name))
            if not rel:
                return out
            node = tree
            for part in rel[:-1]:
                node = node.setdefault(part, {})
            node[rel[-1]] = out
        return tree

    def _shared_method(self: Resolver, shared: SharedModule, name: str, args: list, kwargs: dict,
                       span: Span, frame: Frame) -> Any:
        """`embed.attend(x)`, `model.encode(x)`: another entry point of a shared module."""
        module = shared.ref.module
        if isinstance(module, UserModule):
            if module.method(name) is None and module.base is None:
                raise self.error("AOT353", f"module {module.name} has no method '{name}'", span)
            fn, _ = self._need_module_frame(frame, span, module.name)
            return self._call_user_module(shared.ref, args, kwargs, span, frame, shared=shared,
                                          method=name)
        entry = REGISTRY.lookup(f"nn.{module.name}", name)
        if entry is None:
            raise self.error("AOT353", f"nn.{module.name} has no method '{name}'", span)
        return self._call_layer(entry, f"nn.{module.name}.{name}", args, kwargs, span, frame,
                                dict(shared.ref.bound), shared=shared)

    # ================================================================ binding

    def _bind(self: Resolver, params: ir.Parameters, args: list, kwargs: dict, what: str, span: Span, *,
              skip_self: bool = False, defaults: dict | None = None,
              defaults_env: Env | None = None) -> dict[str, Any]:
        plist = list(params.params[1:] if skip_self else params.params)
        bound: dict[str, Any] = {}
        positional = [p for p in plist if p.kind == "positional"]
        vararg = next((p for p in plist if p.kind == "vararg"), None)
        kwarg = next((p for p in plist if p.kind == "kwarg"), None)
        if len(args) > len(positional) and vararg is None:
            raise self.error("AOT301", f"{what} takes {len(positional)} positional arguments "
                             f"but {len(args)} were given", span,
                             hint=f"signature: {what}({', '.join(p.name for p in plist)})")
        for p, a in zip(positional, args):
            bound[p.name] = a
        if vararg is not None:
            bound[vararg.name] = tuple(args[len(positional):])
        extra: dict[str, Any] = {}
        names = {p.name for p in plist if p.kind in ("positional", "kwonly")}
        for k, v in kwargs.items():
            if k in names:
                if k in bound:
                    raise self.error("AOT303", f"{what} got multiple values for '{k}'", span)
                bound[k] = v
            elif kwarg is not None:
                extra[k] = v
            else:
                raise self.error("AOT302", f"{what} got an unexpected keyword argument '{k}'",
                                 span, hint=f"its arguments are: "
                                 f"{', '.join(p.name for p in plist)}")
        for p in plist:
            if p.name in bound or p.kind in ("vararg", "kwarg"):
                continue
            if defaults is not None and p.name in defaults:
                bound[p.name] = defaults[p.name]
            elif p.default is not None:
                bound[p.name] = self._method_default(p, defaults_env or self.globals)
            else:
                raise self.error("AOT304", f"{what} is missing required argument '{p.name}'",
                                 span)
        if kwarg is not None:
            bound[kwarg.name] = extra
        return {p.name: bound[p.name] for p in plist if p.name in bound}

    def _method_default(self: Resolver, p: ir.Param, env: Env) -> Any:
        """A method's default (read in its file's names where it is called); an array
        (`mask=MASK`) is an `ImportTimeArray` the method computes where it reads it, the
        same one at each call (specializations are keyed by it)."""
        assert p.default is not None, "a parameter with a default"
        key = (id(p), id(env))
        found = self.default_arrays.get(key)
        if found is not None:
            return found
        value = self._top_level_value(p.name, p.default, Frame(env, None, None))
        if isinstance(value, ImportTimeArray):
            self.default_arrays[key] = value
        return value


def _keyword_problem(key: Any) -> str | None:
    """Why a `**dict` key cannot be a keyword argument name, else None."""
    if not isinstance(key, str):
        return f"keys must be strings, got {describe_value(key)}"
    if not key.isidentifier() or quoting.normalize(key) != key or iskeyword(key):
        return f"the key {key[:40]!r} is not an identifier"
    return None


def _same_node(a: Any, b: Any) -> bool:
    """Whether two pytree nodes have one structure at this level (what tree_map needs)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and sorted(a) == sorted(b)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and (
            not isinstance(a, RecordTuple) or a.cls is getattr(b, "cls", None))
    if a is None:
        return b is None
    return not isinstance(b, (dict, tuple, list)) and b is not None


#: The resolver's method for each marker called as `(args, kwargs, expr, frame)`, by id.
_CONTROL_FLOW = {id(namespaces.SCAN): "_scan", id(namespaces.FORI_LOOP): "_fori_loop",
                 id(namespaces.LAX_MAP): "_lax_map", id(namespaces.LAX_COND): "_lax_cond",
                 id(namespaces.LAX_SWITCH): "_lax_switch",
                 id(namespaces.WHILE_LOOP): "_while_loop",
                 id(namespaces.TREE_MAP): "_tree_map", id(namespaces.SCAN_IN_DIM): "_scan_in_dim"}

#: The docstring of the step a scan is emitted over, by what the model file called.
_STEP_DOCS = {"jax.lax.fori_loop": "Loop body", "jax.lax.map": "Mapped function"}


def _name_span(step: Closure) -> Span:
    """Where a scan step is named (its `def` line, or the call that made it)."""
    return step.definition.name_span if step.definition is not None else step.span
