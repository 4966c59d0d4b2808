"""User modules: specialization per hyperparameters, calls, layer calls."""

from __future__ import annotations

import dataclasses
import keyword
from typing import TYPE_CHECKING, Any, Callable

from .. import ir, namespaces
from ..diagnostics import Note, Span
from ..ops import REGISTRY, CallError, Entry
from ..ops.calls import FnCall, LayerCall, value_code
from ..ops.stochastic import KEY_DTYPE, RngKey, takes_keys
from ..program import (
    Code,
    Function,
    OpInfo,
    ParamDecl,
    Tensor,
    TreeVar,
    Var,
    call_code,
    describe,
    fresh_like,
)
from ..quoting import literal
from ..scopes import (
    FunctionState,
    GivenScope,
    HookedScope,
    Scope,
    SharedArg,
    check_name,
    name_hash,
    subscript_path,
)
from ..sizes import plain
from ..values import (
    Closure,
    DType,
    Env,
    ModuleRef,
    Poison,
    RecordTuple,
    SeedKey,
    SelfValue,
    SharedModule,
    StaticBuiltin,
    StaticFunction,
    SuperLayer,
    SuperModule,
    UserModule,
    contains_poison,
    describe_value,
    is_static,
    static_key,
)
from .base import (
    MAX_CALL_DEPTH,
    Abort,
    Frame,
    ReturnSignal,
    Specialization,
)
from .helpers import (
    STEPS_PER_OP,
    assigned_names,
    copy_result,
    fresh_name,
    function_names_taken,
    function_stem,
    has_key,
    holds_array_dict,
    holds_dict,
    read_code,
    rebuild,
    rebuild_tree,
    result_code_of,
    result_leaves,
    shorten,
    state_result_of,
    tensor_paths,
    tensors,
    tree_paths,
    unpack_code,
)
from .initializers import AdoptDtype

if TYPE_CHECKING:
    from .core import Resolver

#: `nn.make_rng`, which old flax.nn functions call when they draw without a key.
MAKE_RNG = REGISTRY.entry("nn", "make_rng")
#: `super` in a method of a module subclass, and the hidden names it reads.
SUPER = StaticFunction("super")
SUPER_CLASS, SUPER_SELF = "<super class>", "<super self>"


def has_static_leaves(result: Any) -> bool:
    """Whether a module's result holds values other than arrays and None."""
    return any(not isinstance(v, Tensor) and v is not None for v in result_leaves(result))


def _array_dict_keys(value: Any) -> list[Any]:
    """The keys of the dicts holding arrays in a result."""
    if isinstance(value, (tuple, list)):
        return [k for v in value for k in _array_dict_keys(v)]
    if isinstance(value, dict) and not is_static(value):
        return [*value, *(k for v in value.values() for k in _array_dict_keys(v))]
    return []


def _derives(module: UserModule, cls: Any) -> bool:
    """Whether `module` is `cls` or a class derived from it."""
    while module is not None:
        if module is cls:
            return True
        module = module.parent  # type: ignore[assignment]
    return False


#: What a module may return besides arrays (and None): static values its callers read.
STATIC_RESULTS = (bool, int, float, str)

#: Guard against runaway unrolling (a `range(10**9)` typo).


class ModulesMixin:
    """User modules: specialization per hyperparameters, calls, layer calls."""

    # ---------------------------------------------------------------- modules

    def _specialize(self: Resolver, ref: ModuleRef, method_name: str, args: list, kwargs: dict,
                    span: Span, entry: bool = False, arrays_out: bool = False
                    ) -> Specialization:
        """`arrays_out`: the numbers the method returns become arrays, as under `jax.jit`
        (a target's function: `return x, 0, {}`)."""
        return self._specialize_bound(ref, method_name, args, kwargs, span, entry,
                                      arrays_out=arrays_out)[0]

    def _specialize_bound(self: Resolver, ref: ModuleRef, method_name: str, args: list,
                          kwargs: dict, span: Span, entry: bool = False,
                          known: dict[tuple[str, ...], ParamDecl] | None = None,
                          arrays_out: bool = False
                          ) -> tuple[Specialization, dict[str, Any]]:
        """The specialization for these arguments, and the arguments bound to the method's
        parameters (defaults filled in) as the caller passes them.  `known`: the parameters
        the instance already has, which the method may read (`FunctionState.known`)."""
        module: UserModule = ref.module
        method = module.method(method_name)
        if method is None and method_name == "apply":  # where the fix goes: the class
            raise self.error("AOT321", f"module {module.name} has no apply method",
                             module.cls.name_span, notes=(Note("called here", span),))
        if method is None:
            raise self.error("AOT353", f"module {module.name} has no method '{method_name}'",
                             span, notes=(Note("defined here", module.cls.name_span),))
        self._check_method_usable(module, method_name, span)
        bound = self._bind(method.params, args, {**dict(ref.bound), **kwargs},
                           f"{module.name}.{method_name}", span, skip_self=True,
                           defaults_env=module.globals_of(method_name))
        given = bound
        # sizes read from the caller's arrays are plain ints inside the module (`sizes`)
        bound = {k: plain(v) for k, v in bound.items()}
        key: tuple[Any, ...] = (id(module), method_name,
                                tuple((k, static_key(v)) for k, v in bound.items()))
        if known:
            key += (tuple((p, d.shape, d.dtype) for p, d in known.items()),)
        if arrays_out:
            key += ("arrays out",)
        found = self.cache.get(key)
        if found is not None:
            return found, given
        self.depth += 1
        if self.depth > MAX_CALL_DEPTH:
            raise self.error("AOT322", f"module {module.name} calls itself too deeply "
                             "(recursive modules are not supported)", span)
        self.calls.append((f"{module.name}, for the target declared here" if entry
                           else f"{module.name}, called here", span))
        try:
            return self._build_specialization(ref, method, bound, key, known or {},
                                              arrays_out, entry), given
        finally:
            self.depth -= 1
            self.calls.pop()

    def _build_specialization(self: Resolver, ref: ModuleRef, method: ir.FunctionDef,
                              bound: dict[str, Any], key: Any,
                              known: dict[tuple[str, ...], ParamDecl],
                              arrays_out: bool = False, entry: bool = False) -> Specialization:
        module: UserModule = ref.module
        fn = FunctionState(self)
        fn.known = known
        env = Env(module.globals_of(method.name))
        inputs: list[tuple[str, Var]] = []
        shared = {n for n, v in bound.items() if _shared_in(v)}
        taken = {n for n in bound if n not in shared}
        for name, value in bound.items():
            if name in shared:
                # a shared module passed in: its parameters stay where it was created, and
                # arrive as an argument holding that subtree
                value = self._receive_shared(name, value, fn, taken)
                env.set(name, value)
                continue
            if holds_dict(value) and not is_static(value):
                # a dict of arrays (a batch), nested dicts, tuples and lists: one parameter,
                # its leaves read on entry (`tokens, mask = batch["tokens"], batch["mask"]`)
                env.set(name, self._receive_tree(name, value, fn, inputs, method.span,
                                                 method.name_span,
                                                 f"{module.name}.{method.name}"))
                continue
            if isinstance(value, (tuple, list)) and not is_static(value):
                # a tuple of arrays (an LSTM carry): one parameter, unpacked on entry
                fresh_tree = rebuild(value, [fresh_like(t)
                                              for t in tensors(value)])
                var = TreeVar(name)
                inputs.append((name, var))
                fn.emit("ops/module_call.j2", {"target": unpack_code(fresh_tree, fresh_tree, []),
                                               "call": Code((var,))},
                        tuple(tensors(fresh_tree)), method.span, name)
                env.set(name, fresh_tree)
                continue
            fresh = fresh_name(value, fn, name)
            if fresh is not value:
                inputs.append((name, fresh))
            env.set(name, fresh)
        scope = Scope(fn, (), module.name)
        frame = Frame(env, fn, scope, ref)
        receiver = SelfValue(scope)
        env.set(method.params.params[0].name if method.params.params else "self", receiver)
        self._bind_super(env, module, method.name, receiver)
        result: Any = None
        errors = self.errors
        try:
            self._exec_block(method.body, frame)
        except ReturnSignal as r:
            result = r.value
        if contains_poison(result) or self.errors != errors:
            raise Abort()  # a body with errors has no meaningful result (no cascades)
        result = self._to_device(result, frame, method.span)  # numpy results become arrays
        self._check_result(result, method)
        if not arrays_out and entry and has_static_leaves(result):
            arrays_out, key = True, (*key, "arrays out")  # what a caller gets stays static
        if arrays_out:
            result = self._numbers_to_arrays(result, method, frame)
        fname = self._function_name(module.name if method.name == "apply"
                                    else f"{module.name}_{method.name}")
        init_name = self._function_name(f"{fname}_init") if fn.data_init else None
        # the hyperparameters: every argument without an array (shared modules too), as
        # they are now (the body may have appended arrays to a list it was given)
        static = {k: v for k, v in bound.items() if is_static(v)}
        hp = ", ".join(f"{k}={shorten(v)}" for k, v in static.items())
        result_code, leaves = result_code_of(result, fn)
        function = Function(
            name=fname, doc=f"{module.name}.{method.name}({hp})",
            takes_params=bool(fn.params), state_collections=tuple(fn.collections),
            takes_rng=fn.takes_rng, inputs=tuple((n, t) for n, t in inputs if isinstance(t, Var)),
            body=tuple(fn.ops), result=result_code, result_tensors=tuple(leaves),
            span=method.span, state_result=state_result_of(fn), hints=dict(fn.hints),
            shared_args=tuple(a.name for a in fn.shared_args), init_name=init_name,
            origin=f"{module.name}.{method.name}", label=ref.label or "",
            hparams=tuple(static.items()),
            params=tuple(fn.params.values()),
            state=tuple(ParamDecl((c, *p), d.shape, d.dtype, d.init, d.span)
                        for (c, p), d in fn.state.items()))
        self.functions.append(function)
        spec = Specialization(function, dict(fn.params), dict(fn.state), result,
                              tuple(fn.shared_args))
        self.cache[key] = spec
        return spec

    def _receive_tree(self: Resolver, name: str, value: Any, fn: FunctionState,
                      inputs: list[tuple[str, Var]], span: Span, where: Span, owner: str
                      ) -> Any:
        """A tree argument holding dicts, as the function `owner` sees it: fresh arrays at
        its leaves, read from its one parameter `name` on entry (static leaves stay)."""
        arrays = [(path, t) for path, t in tree_paths(value) if isinstance(t, Tensor)]
        for bad in _array_dict_keys(value):
            if not isinstance(bad, str):
                raise self.error("AOT326", f"argument '{name}' of {owner} holds a "
                                 f"dict of arrays keyed by {describe_value(bad)}; the keys of "
                                 "a dict of arrays must be strings", where,
                                 hint="key the arrays by name, e.g. {\"tokens\": tokens}")
        if not arrays:
            return value
        fresh = [fresh_like(t) for _, t in arrays]
        var = TreeVar(name)
        inputs.append((name, var))
        for (path, _), t in zip(arrays, fresh):
            last = path[-1] if path else name
            fn.hint(t, last if isinstance(last, str) and last.isidentifier() else name)
        reads = [read_code(var, path) for path, _ in arrays]
        fn.emit("ops/module_call.j2", {"target": Code.join(", ", [Code((t,)) for t in fresh]),
                                       "call": Code.join(", ", reads)},
                tuple(fresh), span, name)
        return rebuild_tree(value, fresh)

    def _receive_shared(self: Resolver, name: str, value: Any, fn: FunctionState,
                        taken: set[str]) -> Any:
        """`value` with each shared module in it replaced by one rooted at a new argument."""
        def go(v: Any, where: tuple[Any, ...]) -> Any:
            if isinstance(v, SharedModule):
                arg = SharedArg(_shared_arg_name(name, where, taken), (name, *where))
                taken.add(arg.name)
                fn.shared_args.append(arg)
                instance = Scope(fn, (), v.ref.class_name, shared_arg=arg)
                return SharedModule(v.ref, None, v.name, v.span, instance=instance)
            if isinstance(v, (tuple, list)):
                items = [go(x, (*where, i)) for i, x in enumerate(v)]
                return tuple(items) if isinstance(v, tuple) else items
            if isinstance(v, dict):
                return {k: go(x, (*where, k)) for k, x in v.items()}
            return v

        return go(value, ())

    def _shared_instance(self: Resolver, shared: SharedModule) -> Scope:
        """The scope of a shared module's own parameters, in the function calling it."""
        if shared.instance is not None:
            return shared.instance
        return shared.scope.child(shared.name, shared.ref.class_name)

    def _pass_shared(self: Resolver, spec: Specialization, bound: dict[str, Any], fn: FunctionState,
                     span: Span) -> list[Code]:
        """Keyword arguments giving a callee the shared modules it received; their
        parameters, declared inside the callee, are merged where each was created."""
        out = []
        for arg in spec.shared:
            value: Any = bound[arg.where[0]]
            for step in arg.where[1:]:
                value = value[step]
            inst = self._shared_instance(value)
            for path, decl in arg.params.items():
                self._merge_param(inst.params, inst.prefix + path, decl, value.name, span)
            out.append(Code((f"{arg.name}={subscript_path(inst.root, inst.prefix)}",)))
        return out

    def _merge_param(self: Resolver, store: dict, full: tuple[str, ...], decl: ParamDecl, owner: str,
                     span: Span) -> None:
        existing = store.get(full)
        if existing is not None and (existing.shape, existing.dtype) != (decl.shape,
                                                                          decl.dtype):
            raise self.error(
                "AOT312", f"shared module '{owner}' called with inputs that change its "
                f"parameter '{'/'.join(full)}': now {describe(decl.shape, decl.dtype)}, "
                f"first {describe(existing.shape, existing.dtype)}", span,
                notes=(Note("first declared here", existing.span),) + (
                    (Note("declared again here", decl.span),) if decl.span != span else ()),
                hint="a shared module must see inputs of the same shape on every call")
        if existing is None:
            store[full] = ParamDecl(full, decl.shape, decl.dtype, decl.init, decl.span,
                                    decl.from_data)

    def _function_name(self: Resolver, base: str) -> str:
        """A fresh module-level name for an emitted function, from a DSL name.

        It never takes a name the generated module binds otherwise (imports, builtins,
        targets and their helpers, copied initializers): functions are called by name.
        """
        base = function_stem(base)
        names = tuple(t.name for t in self.targets)
        if self.names_taken[0] != names:  # targets are declared before most functions
            self.names_taken = (names, function_names_taken(self.targets))
        taken = self.names_taken[1]
        # fn_names: every name handed out (and every base used) -> its next suffix
        n = self.fn_names.get(base, 0)
        while True:
            name = base if n == 0 else f"{base}_{n}"
            n += 1
            if name not in taken and (name not in self.fn_names or name == base and n == 1):
                break
        self.fn_names[base] = n
        self.fn_names.setdefault(name, 1)
        return name

    def _bind_super(self: Resolver, env: Env, module: UserModule, name: str,
                    receiver: SelfValue) -> None:
        """What `super()` reads in the method `name` of `module`: the class defining the
        method and `self` (CPython's `__class__` cell and first argument), under names no
        model file can write."""
        owner = module.owner(name)
        if owner is not None and owner.parent is not None:
            env.set("super", SUPER)
            env.set(SUPER_CLASS, owner)
            env.set(SUPER_SELF, receiver)

    def _super(self: Resolver, args: list, kwargs: dict, span: Span, frame: Frame) -> Any:
        """`super()` or `super(Cls, self)` in a method of a module subclass."""
        if kwargs or len(args) not in (0, 2):
            raise self.error("AOT301", "super() takes no arguments, or a class and self", span)
        if not args:
            owner, receiver = frame.env.lookup(SUPER_CLASS)[1], frame.env.lookup(SUPER_SELF)[1]
            return SuperModule(receiver, owner)
        cls, receiver = args
        module = frame.module.module if frame.module is not None else None
        if not isinstance(receiver, SelfValue) or not (
                isinstance(cls, ModuleRef) and isinstance(module, UserModule)
                and _derives(module, cls.module)):
            raise self.error("AOT301", f"super({describe_value(cls)}, "
                             f"{describe_value(receiver)}): give this module's class (or one "
                             "it derives from) and self", span)
        return SuperModule(receiver, cls.module)

    def _super_method(self: Resolver, sup: SuperModule, name: str, args: list, kwargs: dict,
                      span: Span, frame: Frame) -> Any:
        """`super().apply(x, ...)`: the method of a class the module derives from, run in
        this module's scope (its parameters are this module's, as in flax.nn)."""
        parent = sup.after.parent
        method = parent.method(name) if parent is not None else None
        if parent is None or method is None:
            raise self.error("AOT348", f"super() of {sup.after.name} has no method '{name}'",
                             span)
        if sup.receiver.scope.fn is not frame.fn:
            raise self.error("AOT353", f"super().{name} of one module is called inside another "
                             "module", span)
        self._check_method_usable(parent, name, span)
        env = Env(parent.globals_of(name))
        env.set(method.params.params[0].name if method.params.params else "self", sup.receiver)
        self._bind_super(env, parent, name, sup.receiver)
        params = ir.Parameters(method.params.params[1:], method.params.span)
        closure = Closure(f"{parent.name}.{name}", params, method.body, env, method.span,
                          method)
        return self._call_closure(closure, args, kwargs, span, frame)

    def _numbers_to_arrays(self: Resolver, result: Any, method: ir.FunctionDef,
                           frame: Frame) -> Any:
        """A target's result with its numbers as arrays (`jnp.asarray`), as `jax.jit`
        returns them (in dicts too); strings cannot be arrays."""
        asarray = REGISTRY.lookup("jnp", "asarray")

        def go(v: Any) -> Any:
            if isinstance(v, RecordTuple):
                return RecordTuple.make(v.cls, [go(x) for x in v])
            if isinstance(v, (tuple, list)):
                items = [go(x) for x in v]
                return tuple(items) if isinstance(v, tuple) else items
            if isinstance(v, dict):
                return {k: go(x) for k, x in v.items()}
            if isinstance(v, (bool, int, float)):
                return self._call_entry(asarray, "jnp.asarray", [v], {}, method.name_span,
                                        frame)
            if isinstance(v, str):
                raise self.error("AOT323", f"{method.name} returns {describe_value(v)}; a "
                                 "target's results are arrays", method.name_span)
            return v

        return go(result)

    def _check_result(self: Resolver, result: Any, method: ir.FunctionDef) -> None:
        if has_key(result):
            raise self.error("AOT323", f"{method.name} returns a random key; keys cannot leave "
                             "the module that made them", method.name_span)
        for key in _array_dict_keys(result):
            if not isinstance(key, str):
                raise self.error("AOT323", f"{method.name} returns a dict of arrays with the "
                                 f"key {describe_value(key)}; its keys must be strings",
                                 method.name_span)
        for leaf in result_leaves(result):
            # besides arrays, a module may return static values (old flax.nn's modules were
            # functions: `std, group_shape, input_shape = _GroupStd(x)`); its caller gets
            # them at build time (`copy_result`), a target's result has arrays only
            if not isinstance(leaf, (Tensor, *STATIC_RESULTS)) and leaf is not None:
                raise self.error(
                    "AOT323", f"{method.name} must return arrays, static values (numbers, "
                    f"strings) or tuples of them, found {describe_value(leaf)}",
                    method.name_span)

    def _call_user_module(self: Resolver, ref: ModuleRef, args: list, kwargs: dict, span: Span,
                          frame: Frame, name: Any = None, shared: SharedModule | None = None,
                          method: str = "apply") -> Any:
        if ref.module.base is not None:
            return self._call_layer_subclass(ref, args, kwargs, span, frame, name, shared,
                                             method)
        fn, scope = self._need_module_frame(frame, span, ref.class_name)
        if shared is not None:
            instance = self._shared_instance(shared)
            child_name = shared.name
        else:
            try:
                child_name = scope.child_name(ref.class_name, name, span)
            except CallError as e:
                raise self.error(e.code, e.message, span, hint=e.hint, notes=e.notes) from None
            instance = scope.child(child_name, ref.class_name)
        prefix = instance.prefix
        # another method of a shared module reads what its `apply` declared (`get_param`)
        known = {p[len(prefix):]: d for p, d in instance.params.items()
                 if p[:len(prefix)] == prefix} if method != "apply" and shared else None
        spec, bound_inputs = self._specialize_bound(ref, method, args, kwargs, span,
                                                    known=known)
        callee = spec.function
        if instance.shared_arg is not None and callee.state_collections:
            raise self.error(
                "AOT370", f"shared module '{child_name}' keeps state "
                f"({', '.join(callee.state_collections)}), and a shared module with state can "
                "only be called in the module that created it", span,
                notes=(Note("created here", shared.span),) if shared is not None else (),
                hint="call it in the module that created it and pass its outputs on")
        store = instance.params
        for path, decl in spec.params.items():
            full = prefix + path
            if full in store:  # declared before: `_merge_param` checks it is the same
                self._merge_param(store, full, decl, child_name, span)
            else:
                store[full] = ParamDecl(full, decl.shape, decl.dtype, decl.init, decl.span,
                                        decl.from_data)
        call_args: list[Code] = []
        if callee.takes_params:
            call_args.append(Code((subscript_path(instance.root, prefix),)))
        for coll in callee.state_collections:
            fn.use_collection(coll)
            for (c, path), decl in spec.state.items():
                if c == coll:
                    fn.state.setdefault((c, prefix + path), decl)
            current = fn.state_values.get((coll, prefix))
            call_args.append(Code((current,)) if isinstance(current, Var)
                             else Code((subscript_path(coll, prefix),)))
        for pname, _ in callee.inputs:
            call_args.append(value_code(bound_inputs[pname]))
        call_args += self._pass_shared(spec, bound_inputs, fn, span)
        hashed = "/".join(prefix)
        if instance.shared_arg is not None:
            hashed = f"{instance.shared_arg.name}:{hashed}"
        rng_arg = Code((f"rng=jax.random.fold_in(rng, {name_hash(hashed)})",))
        init_args = None
        if callee.init_name is not None:  # the init variant calls the child's
            fn.data_init = True
            init_args = list(call_args) + [rng_arg]
        if callee.takes_rng:
            fn.takes_rng = True
            call_args.append(rng_arg)
        result = copy_result(spec.result, fn)
        # a result holding a dict of arrays is bound whole, then read item by item
        whole = TreeVar("result") if holds_array_dict(result) else None
        outs: list[Var] = list(tensors(result)) if whole is None else [whole]
        # a collection the callee returns as it was given (eval-mode batch statistics) is
        # unchanged here too: `x, _ = block(...)`, and this function returns it as given
        returned = dict(callee.state_result) if callee.init_name is None else {}
        new_state: list[TreeVar | None] = [
            None if returned.get(c) == Code((c,)) else TreeVar(f"new {c}")
            for c in callee.state_collections]
        for coll, var in zip(callee.state_collections, new_state):
            if var is not None:
                fn.state_values[(coll, prefix)] = var
                fn.hint(var, f"{child_name}_{coll}")
        target = unpack_code(spec.result, result if whole is None else whole, new_state)
        fn.emit("ops/module_call.j2",
                {"target": target, "call": call_code(callee, call_args)},
                tuple(outs) + tuple(v for v in new_state if v is not None), span,
                f"{ref.class_name.lower()}_out",
                info=OpInfo(path=prefix, module=ref.class_name, callee=callee,
                            shared=instance.shared_arg is not None),
                init_args=None if init_args is None else {
                    "target": target, "call": call_code(callee, init_args, "init")})
        if whole is not None:
            fn.hint(whole, f"{child_name}_out")
            for path, t in tensor_paths(result):
                read = Code.of(whole, *(f"[{literal(k)}]" for k in path))
                fn.emit("ops/call.j2", {"call": read}, (t,), span,
                        str(path[-1]) if path and isinstance(path[-1], str) else "item")
        return result

    def _need_function_frame(self: Resolver, frame: Frame, span: Span, what: str
                             ) -> FunctionState:
        """The function being emitted: a module's, or a loss's or a custom rule's (what
        needs no parameter scope: jax.vmap, jax.checkpoint, jax.jvp)."""
        if frame.fn is None:
            raise self.error("AOT324", f"{what} can only be called inside a module's apply "
                             "or a function it calls (a loss, a custom rule)", span)
        return frame.fn

    def _need_module_frame(self: Resolver, frame: Frame, span: Span, what: str) -> tuple[FunctionState,
                                                                               Scope]:
        if frame.fn is None or frame.scope is None:
            raise self.error("AOT324", f"{what} can only be called inside a module's apply",
                             span)
        return frame.fn, frame.scope

    def _call_layer(self: Resolver, entry: Entry, written: str, args: list, kwargs: dict, span: Span,
                    frame: Frame, bound_kwargs: dict | None = None, name: Any = None,
                    shared: SharedModule | None = None, hook: Any = None,
                    class_name: str | None = None, given: Any = None) -> Any:
        """A call of a table entry (a layer, a function, a method); every op it emits costs
        emit and verify time, so it is charged to the step budget like work (however the
        entry was reached: a function, a layer, a partial, a shared module)."""
        fn = frame.fn
        if fn is not None and (any(isinstance(a, SeedKey) for a in args) or any(
                isinstance(v, SeedKey) for v in kwargs.values())):
            # keys made at the file's top level: their jax calls, emitted here
            args = [self._replay_key(a, span, frame) if isinstance(a, SeedKey) else a
                    for a in args]
            kwargs = {k: self._replay_key(v, span, frame) if isinstance(v, SeedKey) else v
                      for k, v in kwargs.items()}
        ops = len(fn.ops) if fn is not None else 0
        try:
            return self._run_entry(entry, written, args, kwargs, span, frame, bound_kwargs,
                                   name, shared, hook, class_name, given)
        finally:
            if fn is not None and len(fn.ops) > ops:
                self.steps += (len(fn.ops) - ops) * STEPS_PER_OP - 1
                self._step(span)

    def _run_entry(self: Resolver, entry: Entry, written: str, args: list, kwargs: dict,
                   span: Span, frame: Frame, bound_kwargs: dict | None, name: Any,
                   shared: SharedModule | None, hook: Any, class_name: str | None,
                   given: Any) -> Any:
        scope: Scope | None
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
                    f"{', '.join(f'{k}={shorten(v)}' for k, v in kwargs.items()) or '...'}); "
                    f"{written}(...)(x) is Linen's style")
            bound = entry.signature.bind(written, args, merged)
            if entry.name == "stop_gradient" and len(args) == 1 and isinstance(args[0], RngKey):
                return args[0]  # a key carries no gradient: JAX gives it back as it is
            # (the table's defaults are never keys: what the call passes is enough to look at)
            if not takes_keys(entry) and (has_key(args) or has_key(merged)):
                raise CallError("AOT206", f"{written} does not take a random key",
                                hint="pass keys from nn.make_rng() to jax.random functions or "
                                     "to nn.dropout(..., rng=key)")
            if entry.kind == "layer":
                if given is not None:  # `Layer.call(params, ...)`: the caller's arrays
                    child: Scope = GivenScope(fn, (), entry.name, given=given, written=written)
                elif shared is not None:
                    child = self._shared_instance(shared)
                    child = Scope(child.fn, child.prefix, entry.name,
                                  shared_arg=child.shared_arg)
                else:
                    assert scope is not None  # a layer's frame is a module's (see above)
                    child_name = scope.child_name(class_name or entry.linen_name or entry.name,
                                                  name, span)
                    child = scope.child(child_name, entry.name)
                if hook is not None:
                    child = HookedScope(child.fn, child.prefix, class_name or entry.name,
                                        shared_arg=child.shared_arg, hook=hook)
                layer_call = LayerCall(entry, written, bound, list(args), merged, span, fn,
                                       scope=child, call_function=lambda f, a, k: self._call(
                                           f, a, k, ir.Call(ir.Name(written, span), (), (),
                                                            span), frame))
                if "param_dtype" in bound and "param_dtype" not in merged:
                    return self._layer_rule_adopting(layer_call, fn)
                return entry.rule(layer_call)
            if name is not None:
                raise CallError("AOT310", f"{written} has no parameters and takes no name=")
            return entry.rule(FnCall(entry, written, bound, list(args), merged, span, fn,
                                     make_rng=self._make_rng_here(span, frame)))
        except CallError as e:
            raise self.error(e.code, e.message, e.span or span, hint=e.hint,
                             notes=e.notes) from None

    def _layer_rule_adopting(self: Resolver, call: LayerCall, ctx: FunctionState) -> Any:
        """A layer's rule, for a call that gives no param_dtype: where a flax.nn initializer
        `(key, shape)` of the model file returns another dtype (a complex kernel), the
        rule runs again with that param_dtype, as old flax.nn gave a parameter the dtype
        its initializer returned.  What the first run declared and emitted is undone."""
        scope = call.scope
        assert isinstance(scope, Scope)
        fn = scope.fn
        # what the rule adds comes last in these dicts (insertion order): their lengths are
        # enough to undo it, and taking them costs nothing per call (a model of 10,000
        # layers in one function calls this 10,000 times)
        ops, params, state = len(ctx.ops), len(scope.params), len(fn.state)
        previous, self.adopt_dtype = self.adopt_dtype, True
        try:
            return call.entry.rule(call)
        except AdoptDtype as a:
            adopted = a.dtype
        finally:
            self.adopt_dtype = previous
        del ctx.ops[ops:]
        for key in list(scope.params)[params:]:
            del scope.params[key]
        for skey in list(fn.state)[state:]:
            del fn.state[skey]
        call.args["param_dtype"] = DType(adopted)
        call.scope = dataclasses.replace(scope, counters={}, used={})
        return call.entry.rule(call)  # a second mismatch is the initializer's error

    def _make_rng_here(self: Resolver, span: Span, frame: Frame) -> Callable[[], Any] | None:
        """`nn.make_rng()` at `span`, for a function that draws as old flax.nn's did
        without a key given (None outside a module, where there is no rng to draw)."""
        if frame.fn is None or frame.scope is None:
            return None
        return lambda: self._call_layer(MAKE_RNG, "nn.make_rng", [], {}, span, frame)

    # ---------------------------------------------------------------- flax.nn forms

    def _function_module(self: Resolver, stmt: ir.FunctionDef, frame: Frame) -> bool:
        """`@nn.module def MLP(x, features): ...`: a module whose apply is the function."""
        values = [self.eval(d, frame) for d in stmt.decorators]
        if not any(v is namespaces.MODULE_FN for v in values):
            return False
        if len(values) > 1:
            other = next(d for d, v in zip(stmt.decorators, values)
                         if v is not namespaces.MODULE_FN)
            raise self.error("AOT325", "@nn.module cannot be combined with other decorators",
                             other.span)
        taken = set(stmt.params.names())
        me = next(n for n in ("self", "_self", "__module") if n not in taken)
        first = ir.Param(me, None, None, "positional", stmt.name_span)
        apply = ir.FunctionDef("apply", ir.Parameters((first, *stmt.params.params),
                                                      stmt.params.span),
                               stmt.body, (), stmt.docstring, stmt.span,
                               stmt.name_span)
        cls = ir.ClassDef(stmt.name, (), (apply,), stmt.docstring, stmt.span, stmt.name_span)
        frame.env.set(stmt.name, ModuleRef(UserModule(stmt.name, cls, frame.env)))
        return True

    def _layer_base(self: Resolver, cls: ir.ClassDef, bases: list, frame: Frame
                    ) -> Entry | None:
        """The built-in layer a class subclasses (`class StdConv(nn.Conv)`), checked."""
        layers = [b for b in bases if isinstance(b, ModuleRef) and isinstance(b.module, Entry)]
        if not layers:
            return None
        self._one_unbound_base(cls, bases, layers[0], "layer", f"nn.{layers[0].class_name}")
        self._module_decorators(cls, frame)
        if cls.others:
            first = cls.others[0]
            raise self.error(first.code, first.message, first.where, hint=first.hint)
        entry: Entry = layers[0].module
        for m in cls.methods:
            if m.name in ("apply", "__call__"):
                raise self.error(
                    "AOT374", f"class {cls.name} subclasses nn.{entry.name} and overrides "
                    f"{m.name}: a layer subclass may override param only", m.name_span,
                    hint=f"to write a new layer, subclass nn.Module and call nn.{entry.name} "
                         "inside its apply")
            if m.decorators:
                raise self.error("AOT325", "decorators are not supported on the methods of "
                                 "a layer subclass", m.decorators[0].span)
        return entry

    def _call_layer_subclass(self: Resolver, ref: ModuleRef, args: list, kwargs: dict, span: Span,
                             frame: Frame, name: Any, shared: SharedModule | None,
                             method: str) -> Any:
        """`StdConv(x, ...)`: the built-in layer's rule, each parameter through `param`."""
        module: UserModule = ref.module
        entry: Entry = module.base
        if method != "apply":
            found = REGISTRY.lookup(f"nn.{entry.name}", method)
            if found is None:
                raise self.error("AOT353", f"{module.name} (nn.{entry.name}) has no method "
                                 f"'{method}'", span)
            entry = found
        hook = self._param_hook(ref) if module.method("param") is not None else None
        return self._call_layer(entry, module.name if method == "apply" else
                                f"{module.name}.{method}", args, kwargs, span, frame,
                                dict(ref.bound), name=name, shared=shared, hook=hook,
                                class_name=module.name)

    def _param_hook(self: Resolver, ref: ModuleRef) -> Any:
        """What a subclassed layer's scope calls for each parameter: the class's `param`."""
        module: UserModule = ref.module
        method = module.method("param")
        assert method is not None

        def hook(scope: HookedScope, pname: str, shape: tuple[int, ...], dtype: str,
                 init: Any, span: Span) -> Code:
            plain = Scope(scope.fn, scope.prefix, scope.owner, shared_arg=scope.shared_arg)

            def declare(*args: Any, **kwargs: Any) -> Tensor:
                from ..ops.registry import Signature

                b = Signature.parse("name, shape, initializer=None, dtype=None").bind(
                    "super().param", list(args), kwargs)
                n, s = b["name"], b["shape"]
                if not isinstance(n, str) or not (isinstance(s, (tuple, list)) and all(
                        isinstance(d, int) and not isinstance(d, bool) for d in s)):
                    raise CallError("AOT351", "super().param takes a name and a shape: "
                                    f"super().param(name, shape, init), got "
                                    f"{describe_value(n)}, {describe_value(s)}")
                dt = b["dtype"].name if isinstance(b["dtype"], DType) else dtype
                code = scope.declare(n, tuple(s), dt, b["initializer"] or init, span)
                out = Tensor(tuple(s), dt)
                scope.fn.emit("ops/call.j2", {"call": code}, (out,), span, n)
                return out

            env = Env(module.globals)
            env.set(method.params.params[0].name if method.params.params else "self",
                    SelfValue(plain))
            env.set("super", StaticBuiltin("super", lambda *a: SuperLayer(declare)))
            positional = [p for p in method.params.params[1:] if p.kind == "positional"]
            call_args: list[Any] = [pname, tuple(shape), init]
            if len(positional) >= 4:
                call_args.append(DType(dtype))
            params = ir.Parameters(method.params.params[1:], method.params.span)
            closure = Closure(f"{module.name}.param", params, method.body, env, method.span,
                              method)
            result = self._call_closure(closure, call_args, {}, span,
                                        Frame(env, scope.fn, plain, ref))
            want = describe(tuple(shape), dtype)
            if not isinstance(result, Tensor) or (result.shape, result.dtype) != (shape, dtype):
                got = result.describe() if isinstance(result, Tensor) else \
                    describe_value(result)
                raise CallError("AOT374", f"{module.name}.param returns {got} for '{pname}', "
                                f"which nn.{module.base.name} declares {want}",
                                notes=(Note("param is defined here", method.name_span),),
                                hint="the override must return an array of the shape and "
                                     "dtype it was asked for")
            return Code((result,))

        return hook

    def _super_param(self: Resolver, sup: SuperLayer, args: list, kwargs: dict, span: Span) -> Tensor:
        try:
            return sup.declare(*args, **kwargs)
        except CallError as e:
            raise self.error(e.code, e.message, span, hint=e.hint, notes=e.notes) from None

    def _module_call(self: Resolver, ref: ModuleRef, args: list, kwargs: dict, span: Span,
                     frame: Frame) -> Any:
        """`nn.Dense.call(params, x, 5)`: a module applied with the caller's parameters.

        `params` is a (nested) dict of arrays, built by the caller (a hypernetwork, tied or
        transformed weights); nothing is declared in the caller's tree.  Each parameter
        the module needs must be there with the shape and dtype it declares.
        """
        fn, _ = self._need_module_frame(frame, span, f"{ref.class_name}.call")
        written = f"{ref.class_name}.call"
        if not args:
            raise self.error("AOT304", f"{written} is missing its first argument, the "
                             "parameters", span,
                             hint=f"write {ref.class_name}.call(params, inputs...)")
        given, rest = args[0], args[1:]
        kwargs = dict(kwargs)
        kwargs.pop("name", None)  # old flax.nn: only names the call (so does a partial's)
        ref = ref.split_name()[0]
        problem = _given_problem(given)
        if problem:
            raise self.error("AOT373", f"{written}: params must be a dict of arrays (nested "
                             f"for submodules), got {problem}", span)
        module = ref.module
        if isinstance(module, Entry) or module.base is not None:
            entry = module if isinstance(module, Entry) else module.base
            hook = self._param_hook(ref) if isinstance(module, UserModule) and \
                module.method("param") is not None else None
            return self._call_layer(entry, f"nn.{entry.name}.call" if isinstance(
                module, Entry) else written, rest, kwargs, span, frame, dict(ref.bound),
                hook=hook, given=given)
        spec = self._specialize(ref, "apply", rest, kwargs, span)
        callee = spec.function
        if callee.state_collections:
            raise self.error("AOT373", f"{written}: {module.name} keeps state "
                             f"({', '.join(callee.state_collections)}), which a module "
                             "applied with given parameters cannot update", span,
                             hint=f"call {module.name} itself to keep its state")
        for path, decl in spec.params.items():
            node: Any = given
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            want = describe(decl.shape, decl.dtype)
            if not isinstance(node, Tensor) or (node.shape, node.dtype) != (decl.shape,
                                                                             decl.dtype):
                got = node.describe() if isinstance(node, Tensor) else (
                    "nothing" if node is None else describe_value(node))
                raise self.error("AOT373", f"{written}: the parameters given need "
                                 f"'{'/'.join(path)}' ({want}), found {got}", span,
                                 notes=(Note("declared here", decl.span),))
        bound = self._bind(module.method("apply").params, rest, {**dict(ref.bound), **kwargs},
                           module.name, span, skip_self=True,
                           defaults_env=module.globals_of("apply"))
        call_args: list[Code] = []
        if callee.takes_params:
            call_args.append(value_code(given))
        for pname, _ in callee.inputs:
            call_args.append(value_code(bound[pname]))
        call_args += self._pass_shared(spec, bound, fn, span)
        if callee.takes_rng:
            fn.takes_rng = True
            call_args.append(Code((f"rng=jax.random.fold_in(rng, "
                                   f"{name_hash('call/' + module.name)})",)))
        result = copy_result(spec.result, fn)
        fn.emit("ops/module_call.j2",
                {"target": unpack_code(spec.result, result, []),
                 "call": call_code(callee, call_args)},
                tuple(tensors(result)), span, module.name.lower())
        return result

    # ---------------------------------------------------------------- data-dependent init

    def _param_from_data(self: Resolver, scope: Scope, pname: str, shape: Any, init: Any, dtype: str,
                         span: Span, frame: Frame) -> Any:
        """`self.param(name, None, init)` (pixelcnn's weight normalization), or an
        initializer that reads the module's arrays: initialized from data.

        The initializer runs inline, on the arrays of the forward pass, in the function's
        init variant only, which writes its result into `params`; apply reads it like any
        parameter.  Its result (an array or a dict of arrays) fixes the parameter's
        shapes, so the parameter tree and `PARAM_SHAPES` are known at build time.
        """
        fn = scope.fn
        what = f"self.param({pname!r}, {'None' if shape is None else shape}, ...)"
        if not isinstance(init, Closure):
            raise self.error("AOT352", f"{what}: shape=None initializes the parameter from "
                             f"data, by a function of the model file called as init(key, "
                             f"None); {describe_value(init)} needs a shape", span,
                             hint="give the shape, or an initializer function (key, shape)")
        if _reads_poison(init):
            raise Abort()  # it reads a value whose error is already reported
        path = scope.prefix + (pname,)
        key = RngKey((), KEY_DTYPE)
        fn.emit("ops/call.j2", {"call": Code((
            f"jax.random.fold_in(rng, {name_hash('data:' + '/'.join(path))})",))}, (key,), span,
            "init_key", init_only=True)
        first = len(fn.ops)
        positional = [p for p in init.params.params if p.kind == "positional"]
        args: list[Any] = [key, shape]
        if len(positional) >= 3:
            args.append(DType(dtype))
        result = self._call_closure(init, args, {}, span, frame)
        # the initializer's work belongs to the init variant (apply reads the result)
        fn.ops[first:] = [dataclasses.replace(op, init_only=True) for op in fn.ops[first:]]
        leaves = _param_leaves(result)
        if leaves is None:
            raise self.error("AOT352", f"{what}: the initializer returns "
                             f"{describe_value(result)}; a parameter initialized from data "
                             "is an array or a dict of arrays", span)
        if shape is not None and (not isinstance(result, Tensor) or result.shape != tuple(
                shape)):
            got = result.describe() if isinstance(result, Tensor) else describe_value(result)
            raise self.error("AOT215", f"initializer {init.name} returns {got} for a "
                             f"parameter declared with shape {tuple(shape)}", init.span,
                             notes=(Note("declared here", span),))
        for rel, t in leaves:
            full = path + rel
            existing = scope.params.get(full)
            if existing is not None and (existing.shape, existing.dtype) != (t.shape, t.dtype):
                raise self.error("AOT312", f"parameter '{'/'.join(full)}' initialized again "
                                 f"as {t.describe()}, first {describe(existing.shape, existing.dtype)}",
                                 span, notes=(Note("first declared here", existing.span),))
            scope.params.setdefault(full, ParamDecl(full, t.shape, t.dtype, "", span, True))
        fn.emit("ops/init_param.j2", {"param": Code((subscript_path(scope.root, path),)),
                                      "value": value_code(result)}, (), span, pname,
                init_only=True)
        fn.data_init = True
        return self._read_param_tree(scope, path, result, span, pname)

    def _reads_module_arrays(self: Resolver, init: Any, frame: Frame) -> bool:
        """Whether an initializer function reads arrays of the forward pass (a closure over
        the module's inputs): then it can only run as a data-dependent initialization."""
        if not isinstance(init, Closure) or init.toplevel or frame.fn is None:
            return False
        local = set(init.params.names())
        names: set[str] = set()
        for node in _walk(init.body):
            if isinstance(node, ir.Name):
                names.add(node.id)
            elif isinstance(node, (ir.Assign, ir.AugAssign, ir.AnnAssign, ir.For, ir.While,
                                   ir.With)):
                local.update(assigned_names(node))
        for n in names - local:
            env: Env | None = init.env
            while type(env) is Env:  # local scopes only: module-level names hold no arrays
                if n in env.vars:
                    value = env.vars[n]
                    if not isinstance(value, Poison) and not is_static(value):
                        return True
                    break
                env = env.parent
        return False

    def _read_param_tree(self: Resolver, scope: Scope, path: tuple[str, ...], value: Any, span: Span,
                         stem: str) -> Any:
        if isinstance(value, dict):
            return {k: self._read_param_tree(scope, path + (k,), v, span, k)
                    for k, v in value.items()}
        out = Tensor(value.shape, value.dtype)
        scope.fn.emit("ops/call.j2", {"call": Code((subscript_path(scope.root, path),))},
                      (out,), span, stem)
        return out


#: Argument names a shared module's subtree cannot take in an emitted function.
_ARG_NAMES_TAKEN = frozenset({"params", "state", "rng", "jax", "jnp", "np", "self", "_runtime"})


def _shared_in(value: Any) -> bool:
    """Whether a bound argument is, or contains, a shared module."""
    if isinstance(value, SharedModule):
        return True
    if isinstance(value, (tuple, list)):
        return any(_shared_in(v) for v in value)
    if isinstance(value, dict):
        return any(_shared_in(v) for v in value.values())
    return False


def _shared_arg_name(name: str, where: tuple[Any, ...], taken: set[str]) -> str:
    """`shared_embedding`, `layers_0`: an identifier no other argument uses."""
    base = "_".join([name, *(str(w) for w in where)])
    base = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_"
                   for c in base[:60])  # an ASCII identifier (`quoting.identifier`)
    base = base if base and not base[0].isdigit() else f"shared_{base}"
    if base in _ARG_NAMES_TAKEN or keyword.iskeyword(base):
        base += "_shared"
    out, n = base, 1
    while out in taken:
        out, n = f"{base}_{n}", n + 1
    return out


def _given_problem(value: Any) -> str | None:
    """Why a value cannot be the parameters of `Module.call` (None: a dict of arrays)."""
    if not isinstance(value, dict):
        return describe_value(value)
    for k, v in value.items():
        if not isinstance(k, str):
            return f"a dict with the key {describe_value(k)}"
        if isinstance(v, dict):
            inner = _given_problem(v)
            if inner:
                return inner
        elif not isinstance(v, Tensor) or isinstance(v, RngKey):
            return f"a dict whose '{k}' is {describe_value(v)}"
    return None


def _param_leaves(value: Any, rel: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...],
                                                                      Tensor]] | None:
    """The arrays of a parameter initialized from data, by path (None: not a dict of arrays)."""
    if isinstance(value, Tensor) and not isinstance(value, RngKey):
        return [(rel, value)]
    if isinstance(value, dict) and value:
        out = []
        for k, v in value.items():
            if not isinstance(k, str):
                return None
            try:
                check_name(k, "parameter name")
            except CallError:
                return None
            inner = _param_leaves(v, rel + (k,))
            if inner is None:
                return None
            out += inner
        return out
    return None


def _walk(node: Any):
    """Every IR node under `node` (tuples and dataclass fields), spans excluded."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, (tuple, list)):
            stack.extend(n)
        elif dataclasses.is_dataclass(n) and not isinstance(n, type):
            yield n
            stack.extend(getattr(n, f.name) for f in dataclasses.fields(n) if f.name != "span")


def _reads_poison(init: Closure) -> bool:
    """Whether a function reads a local name whose value failed (reported already)."""
    names = {n.id for n in _walk(init.body) if isinstance(n, ir.Name)}
    env: Env | None = init.env
    while type(env) is Env:
        if any(isinstance(env.vars.get(n), Poison) for n in names):
            return True
        env = env.parent
    return False
