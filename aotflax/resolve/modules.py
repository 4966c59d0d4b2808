"""User modules: specialization per hyperparameters, calls, layer calls."""

from __future__ import annotations

from typing import Any

from .. import ir
from ..diagnostics import Note, Span
from ..ops import CallError, Entry
from ..ops.calls import FnCall, LayerCall, value_code
from ..ops.stochastic import takes_keys
from ..program import (
    Code,
    Function,
    OpInfo,
    ParamDecl,
    Tensor,
    TreeVar,
    Var,
    describe,
    fresh_like,
)
from ..scopes import (
    FunctionState,
    Scope,
    name_hash,
    subscript_path,
)
from ..values import (
    Env,
    ModuleRef,
    SelfValue,
    SharedModule,
    UserModule,
    contains_poison,
    describe_value,
    is_static,
    static_key,
)
from .base import (
    MAX_CALL_DEPTH,
    Frame,
    Specialization,
    _Abort,
    _Return,
)
from .helpers import (
    _copy_result,
    _fresh,
    _has_key,
    _leaves,
    _rebuild,
    _result_code,
    _short,
    _state_result,
    _tensors,
    _unpack_code,
)

#: Guard against runaway unrolling (a `range(10**9)` typo).


class ModulesMixin:
    """User modules: specialization per hyperparameters, calls, layer calls."""

    # ---------------------------------------------------------------- modules

    def _specialize(self, ref: ModuleRef, method_name: str, args: list, kwargs: dict,
                    span: Span, entry: bool = False) -> Specialization:
        module: UserModule = ref.module
        method = module.method(method_name)
        if method is None:  # reported where the class is defined (AOT321); say it here too
            raise self.error("AOT353", f"module {module.name} has no method '{method_name}'",
                             span, notes=(Note("defined here", module.cls.name_span),))
        bound = self._bind(method.params, args, {**dict(ref.bound), **kwargs},
                           f"{module.name}.{method_name}", span, skip_self=True,
                           defaults_env=module.globals)
        key = (id(module), method_name, tuple((k, static_key(v)) for k, v in bound.items()))
        if key in self.cache:
            return self.cache[key]
        self.depth += 1
        if self.depth > MAX_CALL_DEPTH:
            raise self.error("AOT322", f"module {module.name} calls itself too deeply "
                             "(recursive modules are not supported)", span)
        self.calls.append((f"{module.name}, for the target declared here" if entry
                           else f"{module.name}, called here", span))
        try:
            return self._build_specialization(ref, method, bound, key)
        finally:
            self.depth -= 1
            self.calls.pop()

    def _build_specialization(self, ref: ModuleRef, method: ir.FunctionDef,
                              bound: dict[str, Any], key: Any) -> Specialization:
        module: UserModule = ref.module
        fn = FunctionState(self)
        env = Env(module.globals)
        inputs: list[tuple[str, Tensor]] = []
        for name, value in bound.items():
            if isinstance(value, dict) and not is_static(value):
                raise self.error(
                    "AOT326", f"argument '{name}' of {module.name}.{method.name} is a dict of "
                    "arrays; pass a tuple or the arrays as separate arguments", method.name_span)
            if isinstance(value, (tuple, list)) and not is_static(value):
                # a tuple of arrays (an LSTM carry): one parameter, unpacked on entry
                fresh_tree = _rebuild(value, [fresh_like(t)
                                              for t in _tensors(value)])
                var = TreeVar(name)
                inputs.append((name, var))  # type: ignore[arg-type]
                fn.emit("ops/module_call.j2", {"target": _unpack_code(fresh_tree, fresh_tree, []),
                                               "call": Code((var,))},
                        tuple(_tensors(fresh_tree)), method.span, name)
                env.set(name, fresh_tree)
                continue
            fresh = _fresh(value, fn, name)
            if fresh is not value:
                inputs.append((name, fresh))  # type: ignore[arg-type]
            env.set(name, fresh)
        scope = Scope(fn, (), module.name)
        frame = Frame(env, fn, scope, ref)
        env.set(method.params.params[0].name if method.params.params else "self",
                SelfValue(scope))
        result: Any = None
        errors = self.errors
        try:
            self._exec_block(method.body, frame)
        except _Return as r:
            result = r.value
        if contains_poison(result) or self.errors != errors:
            raise _Abort()  # a body with errors has no meaningful result (no cascades)
        result = self._to_device(result, frame, method.span)  # numpy results become arrays
        self._check_result(result, method)
        fname = self._function_name(module.name if method.name == "apply"
                                    else f"{module.name}_{method.name}")
        hp = ", ".join(f"{k}={_short(v)}" for k, v in bound.items() if is_static(v))
        result_code, leaves = _result_code(result, fn)
        function = Function(
            name=fname, doc=f"{module.name}.{method.name}({hp})",
            takes_params=bool(fn.params), state_collections=tuple(fn.collections),
            takes_rng=fn.takes_rng, inputs=tuple((n, t) for n, t in inputs if isinstance(t, Var)),
            body=tuple(fn.ops), result=result_code, result_tensors=tuple(leaves),
            span=method.span, state_result=_state_result(fn), hints=dict(fn.hints))
        self.functions.append(function)
        spec = Specialization(function, dict(fn.params), dict(fn.state), result)
        self.cache[key] = spec
        return spec

    def _function_name(self, base: str) -> str:
        n = self.fn_names.get(base, 0)
        self.fn_names[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def _check_result(self, result: Any, method: ir.FunctionDef) -> None:
        if _has_key(result):
            raise self.error("AOT323", f"{method.name} returns a random key; keys cannot leave "
                             "the module that made them", method.name_span)
        if isinstance(result, dict):
            raise self.error("AOT323", "modules returning dicts are not supported yet; return "
                             "a tuple", method.name_span)
        for leaf in _leaves(result):
            if not isinstance(leaf, Tensor) and leaf is not None:
                raise self.error(
                    "AOT323", f"{method.name} must return arrays (or tuples of arrays), found "
                    f"{describe_value(leaf)}", method.name_span)

    def _call_user_module(self, ref: ModuleRef, args: list, kwargs: dict, span: Span,
                          frame: Frame, name: Any = None, shared: SharedModule | None = None,
                          method: str = "apply") -> Any:
        fn, scope = self._need_module_frame(frame, span, ref.class_name)
        if shared is not None:
            child_name, parent = shared.name, shared.scope
        else:
            try:
                child_name, parent = scope.child_name(ref.class_name, name, span), scope
            except CallError as e:
                raise self.error(e.code, e.message, span, hint=e.hint, notes=e.notes) from None
        spec = self._specialize(ref, method, args, kwargs, span)
        callee = spec.function
        prefix = parent.prefix + (child_name,)
        for path, decl in spec.params.items():
            full = prefix + path
            existing = fn.params.get(full)
            if existing is not None and (existing.shape, existing.dtype) != (decl.shape,
                                                                              decl.dtype):
                raise self.error(
                    "AOT312", f"shared module '{child_name}' called with inputs that change its "
                    f"parameter '{'/'.join(full)}': now {describe(decl.shape, decl.dtype)}, "
                    f"first {describe(existing.shape, existing.dtype)}", span,
                    notes=(Note("first declared here", existing.span),),
                    hint="a shared module must see inputs of the same shape on every call")
            fn.params.setdefault(full, ParamDecl(full, decl.shape, decl.dtype, decl.init,
                                                 decl.span))
        call_args: list[Code] = []
        if callee.takes_params:
            call_args.append(Code((subscript_path("params", prefix),)))
        for coll in callee.state_collections:
            fn.use_collection(coll)
            for (c, path), decl in spec.state.items():
                if c == coll:
                    fn.state.setdefault((c, prefix + path), decl)
            current = fn.state_values.get((coll, prefix))
            call_args.append(Code((current,)) if isinstance(current, Var)
                             else Code((subscript_path(coll, prefix),)))
        bound_inputs = dict(self._bind(ref.module.method(method).params, args,
                                       {**dict(ref.bound), **kwargs}, ref.class_name, span,
                                       skip_self=True, defaults_env=ref.module.globals))
        for pname, _ in callee.inputs:
            call_args.append(value_code(bound_inputs[pname]))
        if callee.takes_rng:
            fn.takes_rng = True
            call_args.append(Code((f"rng=jax.random.fold_in(rng, "
                                   f"{name_hash('/'.join(prefix))})",)))
        result = _copy_result(spec.result, fn)
        outs: list[Var] = list(_tensors(result))
        new_state = [TreeVar(f"new {c}") for c in callee.state_collections]
        for coll, var in zip(callee.state_collections, new_state):
            fn.state_values[(coll, prefix)] = var
            fn.hint(var, f"{child_name}_{coll}")
        target = _unpack_code(spec.result, result, new_state)
        fn.emit("ops/module_call.j2",
                {"target": target, "call": Code.of(callee.name, "(", Code.join(", ", call_args),
                                                   ")")},
                tuple(outs) + tuple(new_state), span, ref.class_name.lower(),
                info=OpInfo(path=prefix, module=ref.class_name, callee=callee))
        return result

    def _need_module_frame(self, frame: Frame, span: Span, what: str) -> tuple[FunctionState,
                                                                               Scope]:
        if frame.fn is None or frame.scope is None:
            raise self.error("AOT324", f"{what} can only be called inside a module's apply",
                             span)
        return frame.fn, frame.scope

    def _call_layer(self, entry: Entry, written: str, args: list, kwargs: dict, span: Span,
                    frame: Frame, bound_kwargs: dict | None = None, name: Any = None,
                    shared: SharedModule | None = None) -> Any:
        if entry.kind == "layer" or frame.fn is None:
            fn, scope = self._need_module_frame(frame, span, written)
        else:  # plain functions also run in loss functions, which have no module scope
            fn, scope = frame.fn, frame.scope
        merged = {**(bound_kwargs or {}), **kwargs}
        try:
            if entry.kind == "layer" and not args and "inputs" in entry.signature.names() \
                    and "inputs" not in merged:
                raise CallError(
                    "AOT304", f"{written} is called without its input",
                    hint=f"flax.nn layers take the input first: {written}(x, "
                    f"{', '.join(f'{k}={_short(v)}' for k, v in kwargs.items()) or '...'}); "
                    f"{written}(...)(x) is Linen's style")
            bound = entry.signature.bind(written, args, merged)
            if not takes_keys(entry) and _has_key(bound):
                raise CallError("AOT206", f"{written} does not take a random key",
                                hint="pass keys from nn.make_rng() to jax.random functions or "
                                     "to nn.dropout(..., rng=key)")
            if entry.kind == "layer":
                if shared is not None:
                    child = shared.scope.child(shared.name, entry.name)
                else:
                    child_name = scope.child_name(entry.linen_name or entry.name, name, span)
                    child = scope.child(child_name, entry.name)
                call = LayerCall(entry, written, bound, list(args), merged, span, fn, scope=child)
            else:
                if name is not None:
                    raise CallError("AOT310", f"{written} has no parameters and takes no name=")
                call = FnCall(entry, written, bound, list(args), merged, span, fn)
            return entry.rule(call)
        except CallError as e:
            raise self.error(e.code, e.message, e.span or span, hint=e.hint,
                             notes=e.notes) from None
