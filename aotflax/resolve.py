"""Resolve: interpret a model file statically into a `FileProgram`.

Every expression evaluates to a static value (numbers, tuples, dtypes, module
references...) or a `Tensor` known by shape and dtype.  Static control flow is
executed here (loops unrolled, branches pruned); array operations go through
the operation table, which checks them and records an `Op`.  User modules are
specialized per distinct hyperparameters and input types, one emitted function
each.  Errors are located diagnostics; after an error the statement's targets
are bound to `POISON` so one mistake does not cascade into many.
"""

from __future__ import annotations

import builtins
import hashlib
import keyword
import operator
from dataclasses import dataclass, field
from typing import Any, Iterator

from . import dtypes as dt
from . import ir, meshes, namespaces, safety, training
from .diagnostics import BuildError, Diagnostic, InternalError, Note, Reporter, Span
from .ops import REGISTRY, CallError, Entry
from .ops import initializers as inits
from .ops.calls import FnCall, LayerCall, value_code
from .ops.stochastic import RngKey, takes_keys
from .program import (
    Code,
    FileProgram,
    Function,
    Op,
    ParamDecl,
    TargetProgram,
    Tensor,
    TreeVar,
    UserFunction,
    Var,
    describe,
)
from .scopes import (
    FunctionState,
    Scope,
    StateVariable,
    check_name,
    check_shape,
    name_hash,
    subscript_path,
)
from .values import (
    POISON,
    BoundMethod,
    Closure,
    DType,
    Env,
    Initializer,
    InitializerFactory,
    MeshSpec,
    ModuleRef,
    Namespace,
    OpRef,
    OptaxFn,
    Poison,
    SelfValue,
    SharedModule,
    Spec,
    SpecDType,
    StaticBuiltin,
    StaticError,
    UserModule,
    contains_poison,
    describe_value,
    is_static,
    static_key,
)

#: Guard against runaway unrolling (a `range(10**9)` typo).
MAX_UNROLL = 100_000
#: Nesting of user functions and modules (well below Python's own recursion limit).
MAX_CALL_DEPTH = 48
#: Statements and comprehension items one file may execute at build time: a bound on
#: resolve time whatever the model does (nested loops, recursion), so a build never hangs.
MAX_STEPS = 2_000_000
#: Largest static value a model may build: ints of this many bits, sequences this long.
MAX_STATIC_BITS = 1 << 16
MAX_STATIC_LEN = 1 << 20


class _Abort(Exception):
    """Stop resolving the current statement; the diagnostic is already recorded."""


class _OutOfSteps(Exception):
    """The step budget is spent: stop resolving the whole file (already reported)."""


class _Return(Exception):
    def __init__(self, value: Any):
        self.value = value


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


@dataclass
class Frame:
    """An activation: variables, the function being built and the module scope."""

    env: Env
    fn: FunctionState | None
    scope: Scope | None
    #: Module whose method this is (for `self`).
    module: ModuleRef | None = None


@dataclass(frozen=True)
class Sequential:
    """`nn.Sequential([...])`: its layers, applied in order when called."""

    layers: tuple[Any, ...]


@dataclass
class TargetDecl:
    name: str
    module: ModuleRef
    specs: dict[str, Spec]
    method: str
    platforms: tuple[str, ...]
    devices: int
    span: Span
    #: Training targets: the loss function, optimizer and the loss's own inputs.
    loss: Any = None
    optimizer: Any = None
    batch: dict[str, Spec] = field(default_factory=dict)
    #: Device mesh axes (name, size); empty: `devices` in one data-parallel axis.
    mesh: tuple[tuple[str, int], ...] = ()
    #: Parameter sharding rules: (path pattern, partition spec), first match wins.
    sharding_rules: tuple[tuple[str, tuple[Any, ...]], ...] = ()


@dataclass
class Specialization:
    """A resolved user-module method: its function and what callers must wire up."""

    function: Function
    params: dict[tuple[str, ...], ParamDecl]
    state: dict[tuple[str, tuple[str, ...]], ParamDecl]
    #: Output structure: the return value with fresh tensors (copied per call).
    result: Any


class Resolver:
    """Resolves one model file."""

    def __init__(self, model: ir.ModelFile, symbols: Any = None):
        self.model = model
        #: Sentinel sizes for symbolic dimensions (`symbolic.Sentinels`), or None.
        self.symbols = symbols
        self.reporter = Reporter()
        self.globals = Env()
        self.targets: list[TargetDecl] = []
        self.cache: dict[Any, Specialization] = {}
        self.functions: list[Function] = []
        self.fn_names: dict[str, int] = {}
        self.user_inits: dict[str, Closure] = {}
        self.depth = 0
        self._reported: set[tuple] = set()
        #: Errors raised so far, repeats included (a body with errors must not produce a value).
        self.errors = 0
        self.steps = 0

    # ================================================================ driver

    def run(self) -> FileProgram:
        self._bind_imports()
        top = Frame(self.globals, None, None)
        targets = []
        try:
            for stmt in self.model.body:
                if isinstance(stmt, ir.ClassDef):
                    self._classdef(stmt)
                else:
                    self._top_level(stmt.span, lambda stmt=stmt: self._exec_guarded(stmt, top))
            for decl in self.targets:
                got = self._top_level(decl.span, lambda decl=decl: self._resolve_target(decl))
                if got is not None:
                    targets.append(got)
        except _OutOfSteps:
            pass
        for closure in sorted(self.user_inits.values(), key=lambda c: c.span.line):
            # emitted verbatim into generated code, which verify imports: check it first
            self.reporter.extend(safety.check_emitted_function(
                closure.definition, closure.env))  # type: ignore[arg-type]
        self.reporter.raise_if_errors()
        sha = hashlib.sha256(self.model.file.text.encode()).hexdigest()
        user = tuple(
            UserFunction(c.name, c.definition.source, c.span)  # type: ignore[union-attr]
            for c in sorted(self.user_inits.values(), key=lambda c: c.span.line)
        )
        return FileProgram(self.model.relpath, sha, tuple(self.functions), tuple(targets), user)

    def _top_level(self, span: Span, fn: Any) -> Any:
        """Resolve one top-level statement or target; Python's recursion limit is an error."""
        try:
            return fn()
        except _Abort:
            return None
        except RecursionError:
            self.error("AOT322", "this nests calls or expressions too deeply to resolve "
                       "(recursive functions and modules are not supported)", span)
            return None

    def _step(self, span: Span) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            self.error("AOT330", f"resolving this file takes more than {MAX_STEPS:,} build-time "
                       "steps; stopped here", span, hint="look for loops over large ranges or "
                       "runaway recursion; loops are unrolled at build time")
            raise _OutOfSteps()

    def error(self, code: str, message: str, span: Span | None, *, hint: str | None = None,
              notes: tuple[Note, ...] = ()) -> _Abort:
        self.errors += 1
        key = (code, message, span.line if span else 0, span.col if span else 0)
        if key not in self._reported:
            self._reported.add(key)
            self.reporter.error(code, message, span, hint=hint, notes=notes)
        return _Abort()

    def _bind_imports(self) -> None:
        for imp in self.model.imports:
            value = namespaces.namespace_for(imp.module, imp.member)
            if value is None:
                self.error("AOT104", f"'{imp.member}' cannot be imported from '{imp.module}'",
                           imp.span)
                continue
            self.globals.set(imp.alias, value)

    def _classdef(self, cls: ir.ClassDef) -> None:
        ok = False
        for base in cls.bases:
            try:
                value = self.eval(base, Frame(self.globals, None, None))
            except _Abort:
                return
            ok = ok or value is namespaces.MODULE_BASE
        if not ok:
            self.error("AOT320", f"class {cls.name} must subclass nn.Module", cls.name_span,
                       hint=f"write: class {cls.name}(nn.Module):")
            return
        if not any(m.name == "apply" for m in cls.methods):
            self.error("AOT321", f"module {cls.name} has no apply method", cls.name_span)
        self.globals.set(cls.name, ModuleRef(UserModule(cls.name, cls, self.globals)))

    # ================================================================ targets

    def _resolve_target(self, decl: TargetDecl) -> TargetProgram:
        module = decl.module.module
        if not isinstance(module, UserModule):
            raise self.error("AOT401", "a target must name a user module (class M(nn.Module))",
                             decl.span)
        method = module.method(decl.method)
        if method is None:
            raise self.error("AOT402", f"module {module.name} has no method '{decl.method}'",
                             decl.span)
        names = [p.name for p in method.params.params[1:]]
        unknown = [k for k in decl.specs if k not in names]
        if unknown:
            raise self.error(
                "AOT403", f"target '{decl.name}': {module.name}.{decl.method} has no input "
                f"'{unknown[0]}'", decl.specs[unknown[0]].span,
                hint=f"its arguments are: {', '.join(names)}")
        kwargs: dict[str, Any] = {}
        symbolic: list[tuple[str, tuple[object, ...]]] = []
        for k, spec in decl.specs.items():
            if any(isinstance(d, str) for d in spec.shape):
                symbolic.append((k, tuple(spec.shape)))
            shape = tuple(self._dim_value(d, spec.span) for d in spec.shape)
            kwargs[k] = Tensor(shape, spec.dtype)
        spec_ = self._specialize(decl.module, decl.method, [], kwargs, decl.span, entry=True)
        fn = spec_.function
        inputs = tuple((n, t.shape, t.dtype) for n, t in fn.inputs)
        missing = [k for k in decl.specs if k not in dict(fn.inputs)]
        if missing:
            raise self.error("AOT405", f"target input '{missing[0]}' is not an array input",
                             decl.specs[missing[0]].span)
        params = tuple(spec_.params.values())
        state = tuple(ParamDecl((c, *p), d.shape, d.dtype, d.init, d.span)
                      for (c, p), d in spec_.state.items())
        outs = tuple((t.shape, t.dtype) for t in _tensors(spec_.result))
        hp = ", ".join(f"{k}={_short(v)}" for k, v in decl.module.bound)
        return TargetProgram(
            name=decl.name, entry=fn.name, function=fn, inputs=inputs, params=params,
            state=state, outputs=outs, stochastic=fn.takes_rng, platforms=decl.platforms,
            devices=decl.devices, description=f"{module.name}.{decl.method}({hp})",
            span=decl.span, symbolic=tuple(symbolic), mesh=decl.mesh,
            param_sharding=meshes.param_specs(self, decl.sharding_rules, decl.mesh, params,
                                              decl.span),
            train=(training.resolve_train(self, decl, spec_.result, decl.span, params)
                   if decl.loss is not None else None))

    def _dim_value(self, dim: object, span: Span) -> int:
        """A symbolic dimension resolves as a sentinel size (see `symbolic.py`)."""
        if isinstance(dim, int):
            return dim
        if self.symbols is None:
            raise self.error("AOT404", f"symbolic dimension '{dim}' is not allowed here", span)
        if not str(dim).isidentifier():
            raise self.error("AOT410", f"symbolic dimension {dim!r} must be an identifier such "
                             "as 'batch'", span)
        return self.symbols.value(str(dim))

    def _target_call(self, call: ir.Call, frame: Frame, args: list, kwargs: dict,
                     train: bool = False) -> None:
        span = call.span
        if len(args) != 2 or not isinstance(args[0], str):
            got = ", ".join(describe_value(a) for a in args) or "nothing"
            raise self.error("AOT400", "aot.target takes a name and a module: "
                             f"aot.target(\"name\", Module, x=aot.f32[...]), got ({got})", span)
        name, module = args
        if isinstance(module, ModuleRef) and not isinstance(module.module, UserModule):
            raise self.error("AOT401", f"a target must name a user module (class M(nn.Module)), "
                             f"got the built-in layer nn.{module.class_name}", call.args[1].span,
                             hint="wrap the layer in a module of the model file")
        if not isinstance(module, ModuleRef):
            raise self.error("AOT401", f"a target must name a module, got "
                             f"{describe_value(module)}", call.args[1].span)
        if not name.isidentifier():
            raise self.error("AOT406", f"target name {name!r} is not a Python identifier",
                             call.args[0].span)
        if keyword.iskeyword(name) or name in _TARGET_NAMES_TAKEN or isinstance(
                self.globals.lookup(name)[1], ModuleRef):
            raise self.error("AOT406", f"target name {name!r} is taken in the generated module "
                             "(a Python keyword, builtin, import or module function)",
                             call.args[0].span, hint=f"call it {name}_target, for example")
        if any(t.name == name for t in self.targets):
            raise self.error("AOT407", f"target '{name}' is declared twice", span)
        platforms = kwargs.pop("platforms", ("cpu",))
        if isinstance(platforms, str):
            platforms = (platforms,)
        if not isinstance(platforms, (tuple, list)):
            raise self.error("AOT408", "platforms= must be a tuple of platform names such as "
                             f"(\"cpu\", \"cuda\"), got {describe_value(platforms)}", span)
        bad = [p for p in platforms if p not in ("cpu", "cuda", "tpu")]
        if bad or not platforms:
            raise self.error("AOT408", f"unknown platform {bad[0] if bad else '()'}: expected "
                             "cpu, cuda or tpu", span)
        devices = kwargs.pop("devices", 1)
        method = kwargs.pop("method", "apply")
        sharding_rules = kwargs.pop("param_sharding", None)
        mesh: tuple[tuple[str, int], ...] = ()
        if isinstance(devices, MeshSpec):
            mesh, devices = devices.axes, devices.size
        elif isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
            raise self.error("AOT400", f"devices= must be a positive int or aot.mesh(...), got "
                             f"{describe_value(devices)}", span)
        if sharding_rules is not None:
            sharding_rules = meshes.check_rules(self, sharding_rules, mesh, span)
        if not isinstance(method, str):
            raise self.error("AOT400", f"method= must be a method name, got "
                             f"{describe_value(method)}", span)
        loss = kwargs.pop("loss", None) if train else None
        optimizer = kwargs.pop("optimizer", None) if train else None
        if train and not (isinstance(loss, Closure) and loss.toplevel):
            raise self.error("AOT423", "aot.train_target needs loss=, a function of the model "
                             "file: loss(model_output, *batch) -> scalar", span)
        if train and optimizer is None:
            raise self.error("AOT422", "aot.train_target needs optimizer=, e.g. "
                             "optimizer=optax.adam(1e-3)", span)
        specs: dict[str, Spec] = {}
        for k, v in kwargs.items():
            if not isinstance(v, Spec):
                kw = next((kw for kw in call.keywords if kw.name == k), None)
                raise self.error(
                    "AOT409", f"target input '{k}' must be a spec such as aot.f32[8, 784], got "
                    f"{describe_value(v)}", kw.span if kw else span,
                    hint="bind hyperparameters with Module.partial(...)")
            specs[k] = v
        batch: dict[str, Spec] = {}
        if train:
            method_def = module.module.method(method)
            model_inputs = {p.name for p in method_def.params.params[1:]} if method_def else set()
            batch = {k: v for k, v in specs.items() if k not in model_inputs}
            specs = {k: v for k, v in specs.items() if k in model_inputs}
        self.targets.append(TargetDecl(name, module, specs, method, tuple(platforms),
                                       int(devices), span, loss, optimizer, batch, mesh,
                                       sharding_rules or ()))

    # ================================================================ modules

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
        try:
            return self._build_specialization(ref, method, bound, key)
        finally:
            self.depth -= 1

    def _build_specialization(self, ref: ModuleRef, method: ir.FunctionDef,
                              bound: dict[str, Any], key: Any) -> Specialization:
        module: UserModule = ref.module
        fn = FunctionState()
        env = Env(module.globals)
        inputs: list[tuple[str, Tensor]] = []
        for name, value in bound.items():
            if isinstance(value, dict) and not is_static(value):
                raise self.error(
                    "AOT326", f"argument '{name}' of {module.name}.{method.name} is a dict of "
                    "arrays; pass a tuple or the arrays as separate arguments", method.name_span)
            if isinstance(value, (tuple, list)) and not is_static(value):
                # a tuple of arrays (an LSTM carry): one parameter, unpacked on entry
                fresh_tree = _rebuild(value, [Tensor(t.shape, t.dtype, t.weak)
                                              for t in _tensors(value)])
                var = TreeVar(name)
                inputs.append((name, var))  # type: ignore[arg-type]
                fn.emit("ops/module_call.j2", {"target": _unpack_code(fresh_tree, fresh_tree, []),
                                               "call": Code((var,))},
                        tuple(_tensors(fresh_tree)), method.span, name)
                env.set(name, fresh_tree)
                continue
            if _has_key(value):
                raise self.error("AOT327", f"argument '{name}' of {module.name}.{method.name} is "
                                 "a random key; keys cannot cross module boundaries",
                                 method.name_span, hint="call nn.make_rng() inside the module")
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
        self.user_inits.update(fn.user_inits)
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
                tuple(outs) + tuple(new_state), span, ref.class_name.lower())
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

    # ================================================================ statements

    def _exec_guarded(self, stmt: ir.Stmt, frame: Frame) -> None:
        try:
            self._exec(stmt, frame)
        except _Abort:
            for name in _assigned_names(stmt):
                frame.env.set(name, POISON)

    def _exec_block(self, body: tuple[ir.Stmt, ...], frame: Frame) -> None:
        for stmt in body:
            self._exec_guarded(stmt, frame)

    def _exec(self, stmt: ir.Stmt, frame: Frame) -> None:
        self._step(stmt.span)
        method = getattr(self, "_stmt_" + type(stmt).__name__)
        method(stmt, frame)

    def _stmt_Assign(self, stmt: ir.Assign, frame: Frame) -> None:
        value = self.eval(stmt.value, frame)
        for target in stmt.targets:
            self._assign(target, value, frame)

    def _stmt_AnnAssign(self, stmt: ir.AnnAssign, frame: Frame) -> None:
        if stmt.value is not None:
            self._assign(stmt.target, self.eval(stmt.value, frame), frame)

    def _stmt_AugAssign(self, stmt: ir.AugAssign, frame: Frame) -> None:
        current = self.eval(stmt.target, frame)
        value = self._binop(stmt.op, current, self.eval(stmt.value, frame), stmt.span, frame)
        self._assign(stmt.target, value, frame)

    def _stmt_ExprStmt(self, stmt: ir.ExprStmt, frame: Frame) -> None:
        if isinstance(stmt.value, ir.Constant) and isinstance(stmt.value.value, str):
            return  # a docstring or comment string
        self.eval(stmt.value, frame)

    def _stmt_Return(self, stmt: ir.Return, frame: Frame) -> None:
        raise _Return(self.eval(stmt.value, frame) if stmt.value is not None else None)

    def _stmt_If(self, stmt: ir.If, frame: Frame) -> None:
        test = self._truth(stmt.test, frame)
        self._exec_block(stmt.body if test else stmt.orelse, frame)

    def _stmt_For(self, stmt: ir.For, frame: Frame) -> None:
        iterable = self.eval(stmt.iter, frame)
        for i, item in enumerate(self._iterate(iterable, stmt.iter.span)):
            if i >= MAX_UNROLL:
                raise self.error("AOT330", f"loop unrolls more than {MAX_UNROLL} iterations",
                                 stmt.iter.span)
            self._assign(stmt.target, item, frame)
            try:
                self._exec_block(stmt.body, frame)
            except _Break:
                return
            except _Continue:
                continue
        self._exec_block(stmt.orelse, frame)

    def _stmt_Break(self, stmt: ir.Break, frame: Frame) -> None:
        raise _Break()

    def _stmt_Continue(self, stmt: ir.Continue, frame: Frame) -> None:
        raise _Continue()

    def _stmt_Pass(self, stmt: ir.Pass, frame: Frame) -> None:
        pass

    def _stmt_Raise(self, stmt: ir.Raise, frame: Frame) -> None:
        message = "raised an error"
        if isinstance(stmt.exc, ir.Call) and stmt.exc.args:
            value = self.eval(stmt.exc.args[0], frame)
            message = str(value)
        raise self.error("AOT300", f"model raised: {message}", stmt.span)

    def _stmt_Assert(self, stmt: ir.Assert, frame: Frame) -> None:
        if not self._truth(stmt.test, frame):
            msg = str(self.eval(stmt.msg, frame)) if stmt.msg is not None else "assertion failed"
            raise self.error("AOT300", f"model assertion failed: {msg}", stmt.span)

    def _stmt_FunctionDef(self, stmt: ir.FunctionDef, frame: Frame) -> None:
        for d in stmt.decorators:
            value = self.eval(d, frame)
            if value is not namespaces.MODULE_METHOD:
                raise self.error("AOT325", "decorators are not supported on functions", d.span)
        defaults = {p.name: self.eval(p.default, frame) for p in stmt.params.params
                    if p.default is not None}
        frame.env.set(stmt.name, Closure(stmt.name, stmt.params, stmt.body, frame.env, stmt.span,
                                         stmt, defaults, toplevel=frame.fn is None))

    # ================================================================ assignment

    def _assign(self, target: ir.Expr, value: Any, frame: Frame) -> None:
        if isinstance(target, ir.Name):
            frame.env.set(target.id, value)
            if frame.fn is not None:
                frame.fn.hint(value, target.id)
            return
        if isinstance(target, (ir.TupleExpr, ir.ListExpr)):
            items = self._unpack(value, len(target.elts), target)
            for t, v in zip(target.elts, items):
                self._assign(t, v, frame)
            return
        if isinstance(target, ir.Attribute):
            receiver = self.eval(target.value, frame)
            if isinstance(receiver, StateVariable) and target.attr == "value":
                self._state_write(receiver, value, target.span)
                return
            raise self.error("AOT331", f"cannot set attribute '{target.attr}' of "
                             f"{describe_value(receiver)}", target.span)
        if isinstance(target, ir.Subscript):
            container = self.eval(target.value, frame)
            index = self.eval(target.index, frame)
            if isinstance(container, (list, dict)) and is_static(index):
                try:
                    container[index] = value  # type: ignore[index]
                except (IndexError, KeyError, TypeError, ValueError) as e:
                    raise self.error("AOT332", f"cannot assign item: {e}", target.span) from None
                return
            if isinstance(container, Tensor):
                raise self.error("AOT332", "arrays are immutable; use x.at[index].set(value)",
                                 target.span)
            raise self.error("AOT332", f"cannot assign items of {describe_value(container)}",
                             target.span)
        raise self.error("AOT331", "cannot assign to this expression", target.span)

    def _unpack(self, value: Any, n: int, target: ir.Expr) -> list[Any]:
        if isinstance(value, Poison):
            return [POISON] * n
        if isinstance(value, Tensor):
            raise self.error("AOT333", f"cannot unpack an array {value.describe()}; index it "
                             "instead", target.span)
        try:
            items = list(value)
        except TypeError:
            raise self.error("AOT333", f"cannot unpack {describe_value(value)}",
                             target.span) from None
        if len(items) != n:
            raise self.error("AOT333", f"expected {n} values to unpack, got {len(items)}",
                             target.span)
        return items

    def _iterate(self, value: Any, span: Span) -> Iterator[Any]:
        if isinstance(value, Poison):
            raise _Abort()
        if isinstance(value, Tensor):
            raise self.error("AOT334", f"cannot loop over an array {value.describe()} at build "
                             "time", span, hint="loop over range(x.shape[0]), or use "
                             "jax.lax.scan for a loop inside the computation")
        if isinstance(value, dict):
            return iter(list(value))
        try:
            return iter(list(value))
        except TypeError:
            raise self.error("AOT334", f"cannot loop over {describe_value(value)}",
                             span) from None

    def _truth(self, expr: ir.Expr, frame: Frame) -> bool:
        value = self.eval(expr, frame)
        if isinstance(value, Poison):
            raise _Abort()
        if not is_static(value):
            raise self.error(
                "AOT335", f"this condition depends on an array value ({describe_value(value)}); "
                "conditions must be static", expr.span,
                hint="use jnp.where(cond, a, b) to select values elementwise")
        return bool(value)

    # ================================================================ expressions

    def eval(self, expr: ir.Expr, frame: Frame) -> Any:
        return getattr(self, "_eval_" + type(expr).__name__)(expr, frame)

    def _eval_Constant(self, expr: ir.Constant, frame: Frame) -> Any:
        return expr.value

    def _eval_Name(self, expr: ir.Name, frame: Frame) -> Any:
        found, value = frame.env.lookup(expr.id)
        if found:
            return value
        if expr.id in namespaces.BUILTINS:
            return namespaces.BUILTINS[expr.id]
        if expr.id in safety.FORBIDDEN_NAMES or safety.is_dunder(expr.id):
            raise self.error("AOT105", f"'{expr.id}' is not available in model files: model "
                             "files are data, never executed", expr.span)
        raise self.error("AOT340", f"name '{expr.id}' is not defined", expr.span)

    def _eval_FString(self, expr: ir.FString, frame: Frame) -> Any:
        out = []
        for part in expr.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = self.eval(part.value, frame)
            if not is_static(value):
                raise self.error("AOT341", "f-strings may only format static values, got "
                                 f"{describe_value(value)}", part.span,
                                 hint="format its shape or dtype instead, e.g. {x.shape[-1]}")
            if part.conversion == "r":
                value = repr(value)
            problem = safety.spec_problem(part.format_spec or "")
            if problem:
                raise self.error("AOT341", f"f-string: {problem}", part.span)
            try:
                out.append(format(value, part.format_spec or ""))
            except (ValueError, TypeError) as e:
                raise self.error("AOT341", f"bad format: {e}", part.span) from None
        return "".join(out)

    def _eval_TupleExpr(self, expr: ir.TupleExpr, frame: Frame) -> Any:
        return tuple(self._elements(expr.elts, frame))

    def _eval_ListExpr(self, expr: ir.ListExpr, frame: Frame) -> Any:
        return list(self._elements(expr.elts, frame))

    def _elements(self, elts: tuple[ir.Expr, ...], frame: Frame) -> list[Any]:
        out: list[Any] = []
        for e in elts:
            if isinstance(e, ir.Starred):
                out.extend(self._iterate(self.eval(e.value, frame), e.span))
            else:
                out.append(self.eval(e, frame))
        return out

    def _eval_DictExpr(self, expr: ir.DictExpr, frame: Frame) -> Any:
        out: dict[Any, Any] = {}
        for k, v in zip(expr.keys, expr.values):
            if k is None:
                inner = self.eval(v, frame)
                if isinstance(inner, Poison):
                    raise _Abort()
                if not isinstance(inner, dict):
                    raise self.error("AOT347", f"** needs a dict, got {describe_value(inner)}",
                                     v.span)
                out.update(inner)
            else:
                key = self.eval(k, frame)
                if not is_static(key):
                    raise self.error("AOT342", f"dict keys must be static, got "
                                     f"{describe_value(key)}", k.span)
                try:
                    out[key] = self.eval(v, frame)
                except TypeError as e:  # an unhashable key, such as a list
                    raise self.error("AOT342", f"dict keys must be hashable: {e}",
                                     k.span) from None
        return out

    def _eval_Slice(self, expr: ir.Slice, frame: Frame) -> Any:
        parts = [self.eval(p, frame) if p is not None else None
                 for p in (expr.lower, expr.upper, expr.step)]
        for p, node in zip(parts, (expr.lower, expr.upper, expr.step)):
            if p is not None and not (isinstance(p, int) and not isinstance(p, bool)):
                raise self.error("AOT343", f"slice bounds must be static ints, got "
                                 f"{describe_value(p)}", node.span if node else expr.span,
                                 hint="use jax.lax.dynamic_slice for array-valued offsets")
        return slice(*parts)

    def _eval_IfExp(self, expr: ir.IfExp, frame: Frame) -> Any:
        return self.eval(expr.body if self._truth(expr.test, frame) else expr.orelse, frame)

    def _eval_BoolOp(self, expr: ir.BoolOp, frame: Frame) -> Any:
        value: Any = None
        for v in expr.values:
            value = self.eval(v, frame)
            if not is_static(value):
                raise self.error("AOT335", f"'{expr.op}' needs static operands; use "
                                 "jnp.logical_and / jnp.logical_or for arrays", v.span)
            if (expr.op == "and") != bool(value):
                return value
        return value

    def _eval_UnaryOp(self, expr: ir.UnaryOp, frame: Frame) -> Any:
        value = self.eval(expr.operand, frame)
        if isinstance(value, Poison):
            raise _Abort()
        if expr.op == "not":
            if isinstance(value, Tensor):
                raise self.error("AOT335", "'not' needs a static operand; use "
                                 "jnp.logical_not for arrays", expr.span)
            return not value
        if isinstance(value, Tensor):
            name = {"-": "neg", "+": "pos", "~": "invert"}[expr.op]
            return self._call_entry(REGISTRY.lookup("operator", name), f"'{expr.op}'", [value],
                                    {}, expr.span, frame)
        try:
            return {"-": operator.neg, "+": operator.pos, "~": operator.invert}[expr.op](value)
        except TypeError:
            raise self.error("AOT344", f"bad operand for unary {expr.op}: "
                             f"{describe_value(value)}", expr.span) from None

    def _eval_BinOp(self, expr: ir.BinOp, frame: Frame) -> Any:
        left = self.eval(expr.left, frame)
        right = self.eval(expr.right, frame)
        return self._binop(expr.op, left, right, expr.span, frame)

    def _binop(self, op: str, left: Any, right: Any, span: Span, frame: Frame) -> Any:
        if isinstance(left, Poison) or isinstance(right, Poison):
            raise _Abort()
        if isinstance(left, Tensor) or isinstance(right, Tensor):
            name = _BINOP_NAMES.get(op)
            if name is None or not (_array_like(left) and _array_like(right)):
                raise self.error("AOT344", f"unsupported operand types for {op}: "
                                 f"{describe_value(left)} and {describe_value(right)}", span)
            return self._call_entry(REGISTRY.lookup("operator", name), f"'{op}'", [left, right],
                                    {}, span, frame)
        too_big = _too_big(op, left, right)
        if too_big:
            raise self.error("AOT344", f"the static value {too_big} is too large to compute at "
                             "build time", span)
        try:
            return _STATIC_BINOPS[op](left, right)
        except ZeroDivisionError:
            raise self.error("AOT344", "division by zero in a static expression", span) from None
        except (TypeError, ValueError, OverflowError) as e:
            raise self.error("AOT344", f"bad operands for {op}: {describe_value(left)} and "
                             f"{describe_value(right)} ({e})", span) from None

    def _eval_Compare(self, expr: ir.Compare, frame: Frame) -> Any:
        left = self.eval(expr.left, frame)
        result: Any = True
        for op, comp in zip(expr.ops, expr.comparators):
            right = self.eval(comp, frame)
            if isinstance(left, Tensor) or isinstance(right, Tensor):
                if len(expr.ops) > 1 or op in ("in", "not in", "is", "is not"):
                    raise self.error("AOT344", f"'{op}' is not supported on arrays", expr.span)
                return self._binop(op, left, right, expr.span, frame)
            if isinstance(left, Poison) or isinstance(right, Poison):
                raise _Abort()
            try:
                ok = _STATIC_COMPARE[op](left, right)
            except TypeError as e:
                raise self.error("AOT344", f"cannot compare: {e}", expr.span) from None
            if not ok:
                return False
            result = ok
            left = right
        return bool(result)

    def _eval_Subscript(self, expr: ir.Subscript, frame: Frame) -> Any:
        value = self.eval(expr.value, frame)
        index = self.eval(expr.index, frame)
        if isinstance(value, Poison) or contains_poison(index):
            raise _Abort()
        if isinstance(value, SpecDType):
            return self._spec(value, index, expr)
        if isinstance(value, Tensor):
            return self._call_entry(REGISTRY.lookup("operator", "getitem"), "indexing",
                                    [value, index], {}, expr.span, frame)
        if not is_static(index):
            raise self.error("AOT345", f"indices of static values must be static, got "
                             f"{describe_value(index)} to index {describe_value(value)}",
                             expr.span)
        try:
            return value[index]
        except (IndexError, KeyError, TypeError, ValueError) as e:
            raise self.error("AOT345", f"cannot index {describe_value(value)} with "
                             f"{index!r}: {e}", expr.span) from None

    def _spec(self, value: SpecDType, index: Any, expr: ir.Subscript) -> Spec:
        dims = index if isinstance(index, tuple) else (index,)
        for d in dims:
            if isinstance(d, bool) or not isinstance(d, (int, str)) or (isinstance(d, int)
                                                                        and d < 0):
                raise self.error("AOT410", f"input dimensions must be non-negative ints or "
                                 f"symbolic names, got {d!r}", expr.index.span)
        try:
            check_shape([d for d in dims if isinstance(d, int)], "input")
        except CallError as e:
            raise self.error("AOT410", e.message, expr.index.span) from None
        return Spec(tuple(dims), value.dtype, expr.span)

    def _eval_Attribute(self, expr: ir.Attribute, frame: Frame) -> Any:
        value = self.eval(expr.value, frame)
        if expr.attr.startswith("__"):
            raise self.error("AOT346", f"dunder attribute '{expr.attr}' is not available in "
                             "model files", expr.span)
        if isinstance(value, Tensor) and expr.attr == "T":
            fn, _ = self._need_module_frame(frame, expr.span, "x.T")
            out = Tensor(value.shape[::-1], value.dtype, value.weak)
            fn.emit("ops/call.j2", {"call": Code.of(value, ".T")}, (out,), expr.span, "t")
            return out
        return self._attribute(value, expr.attr, expr.span)

    def _attribute(self, value: Any, attr: str, span: Span) -> Any:
        if isinstance(value, Poison):
            raise _Abort()
        if isinstance(value, Namespace):
            if attr in value.members:
                return value.members[attr]
            raise self.error("AOT346", f"{value.name}.{attr} is not supported by aotflax",
                             span, hint="see `aotflax --list-ops` for the supported operations")
        if isinstance(value, Tensor):
            if attr == "shape":
                return value.shape
            if attr == "ndim":
                return value.ndim
            if attr == "dtype":
                return DType(value.dtype)
            if attr == "size":
                return _size(value.shape)
            if attr == "T":
                return BoundMethod(value, "T", span)
            if REGISTRY.lookup("array", attr) is not None:
                return BoundMethod(value, attr, span)
            raise self.error("AOT346", f"arrays have no supported attribute '{attr}'", span)
        if isinstance(value, (ModuleRef, SharedModule, SelfValue, list, dict, str)):
            return BoundMethod(value, attr, span)
        if isinstance(value, DType) and attr in ("itemsize", "name"):
            return dt.itemsize(value.name) if attr == "itemsize" else value.name
        if isinstance(value, StateVariable) and attr == "value":
            return value.read(span)
        raise self.error("AOT346", f"{describe_value(value)} has no attribute '{attr}'", span)

    def _eval_ListComp(self, expr: ir.ListComp, frame: Frame) -> Any:
        out: list[Any] = []
        self._comprehension(expr.generators, 0, Frame(Env(frame.env), frame.fn, frame.scope,
                                                       frame.module),
                            lambda f: out.append(self.eval(expr.elt, f)))
        return out if expr.kind == "list" else tuple(out)

    def _eval_DictComp(self, expr: ir.DictComp, frame: Frame) -> Any:
        out: dict[Any, Any] = {}

        def add(f: Frame) -> None:
            out[self.eval(expr.key, f)] = self.eval(expr.value, f)

        self._comprehension(expr.generators, 0, Frame(Env(frame.env), frame.fn, frame.scope,
                                                       frame.module), add)
        return out

    def _comprehension(self, gens: tuple[ir.Comprehension, ...], i: int, frame: Frame,
                       body) -> None:
        if i == len(gens):
            body(frame)
            return
        gen = gens[i]
        for item in self._iterate(self.eval(gen.iter, frame), gen.iter.span):
            self._step(gen.span)
            self._assign(gen.target, item, frame)
            if all(self._truth(c, frame) for c in gen.ifs):
                self._comprehension(gens, i + 1, frame, body)

    def _eval_Lambda(self, expr: ir.Lambda, frame: Frame) -> Any:
        defaults = {p.name: self.eval(p.default, frame) for p in expr.params.params
                    if p.default is not None}
        body = (ir.Return(expr.body, expr.body.span),)
        return Closure("<lambda>", expr.params, body, frame.env, expr.span, None, defaults)

    def _eval_Starred(self, expr: ir.Starred, frame: Frame) -> Any:
        raise self.error("AOT103", "starred expression not allowed here", expr.span)

    # ================================================================ calls

    def _eval_Call(self, expr: ir.Call, frame: Frame) -> Any:
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
            if kw.name is None:
                if not isinstance(value, dict):
                    raise self.error("AOT347", f"** needs a dict, got {describe_value(value)}",
                                     kw.span)
                kwargs.update(value)
            else:
                kwargs[kw.name] = value
        if isinstance(func, Poison) or contains_poison(args) or contains_poison(kwargs):
            raise _Abort()
        return self._call(func, args, kwargs, expr, frame)

    def _call(self, func: Any, args: list, kwargs: dict, expr: ir.Call, frame: Frame) -> Any:
        span = expr.span
        if func is namespaces.TARGET or func is namespaces.TRAIN_TARGET:
            if frame.fn is not None:
                raise self.error("AOT400", "targets must be declared at the top level", span)
            return self._target_call(expr, frame, args, kwargs,
                                     train=func is namespaces.TRAIN_TARGET)
        if func is namespaces.MESH:
            return meshes.mesh(self, args, kwargs, span)
        if isinstance(func, OptaxFn):
            return training.call_optax(self, func, args, kwargs, span)
        if func is namespaces.MODEL_PARAM_TRAVERSAL:
            return training.traversal(self, args, kwargs, span)
        if func is namespaces.MULTI_OPTIMIZER:
            return training.multi_optimizer(self, args, kwargs, span)
        if isinstance(func, OpRef):
            return self._call_entry(func.entry, func.written, args, kwargs, span, frame)
        if func is namespaces.SEQUENTIAL:
            return self._sequential(args, kwargs, expr)
        if isinstance(func, Sequential):
            if len(args) != 1 or kwargs:
                raise self.error("AOT355", "a Sequential is called with one input: seq(x)", span)
            value = args[0]
            for layer in func.layers:
                value = self._call(layer, [value], {}, expr, frame)
            return value
        if func is namespaces.SCAN:
            return self._scan(args, kwargs, expr, frame)
        if isinstance(func, ModuleRef):
            name = kwargs.pop("name", None)
            if isinstance(func.module, UserModule):
                return self._call_user_module(func, args, kwargs, span, frame, name=name)
            return self._call_layer(func.module, f"nn.{func.module.name}", args, kwargs, span,
                                    frame, dict(func.bound), name=name)
        if isinstance(func, SharedModule):
            return self._call_shared(func, args, kwargs, span, frame)
        if isinstance(func, Closure):
            return self._call_closure(func, args, kwargs, span, frame)
        if isinstance(func, BoundMethod):
            return self._call_method(func, args, kwargs, expr, frame)
        if isinstance(func, StaticBuiltin):
            return self._call_static(func, args, kwargs, span)
        if isinstance(func, InitializerFactory):
            return self._make_initializer(func, args, kwargs, span)
        if isinstance(func, DType):
            if len(args) == 1 and not kwargs:
                return self._call_entry(REGISTRY.lookup("jnp", "asarray"), f"jnp.{func.name}",
                                        [args[0]], {"dtype": func}, span, frame)
        raise self.error("AOT348", f"{describe_value(func)} is not callable", span)

    def _scan(self, args: list, kwargs: dict, expr: ir.Call, frame: Frame) -> Any:
        """`jax.lax.scan(step, init, xs)`: emitted as a real scan over a nested `def`."""
        span = expr.span
        fn, _ = self._need_module_frame(frame, span, "jax.lax.scan")
        from .ops.registry import Signature

        try:
            b = Signature.parse("f, init, xs=None, length=None, reverse=False, unroll=1").bind(
                "jax.lax.scan", args, kwargs)
        except CallError as e:
            raise self.error(e.code, e.message, span, hint=e.hint) from None
        step, init, xs = b["f"], b["init"], b["xs"]
        if not isinstance(step, Closure) or step.definition is None:
            raise self.error("AOT360", "jax.lax.scan needs a step function defined with 'def' "
                             "inside apply", span)
        carry_in = self._flat_tensors(init, "init", span)
        xs_in = self._flat_tensors(xs, "xs", span) if xs is not None else []
        lengths = {t.shape[0] for t in xs_in if t.shape}
        length = b["length"]
        if any(not t.shape for t in xs_in) or len(lengths) > 1 or (
                length is not None and lengths and lengths != {length}):
            raise self.error("AOT361", "jax.lax.scan: xs must share one leading length, got "
                             f"{', '.join(t.describe() for t in xs_in)}", span)
        if not lengths and length is None:
            raise self.error("AOT361", "jax.lax.scan needs xs or length=", span)
        n = length if length is not None else lengths.pop()
        carry = _rebuild(init, [Tensor(t.shape, t.dtype, t.weak) for t in carry_in])
        x = None if xs is None else _rebuild(xs, [Tensor(t.shape[1:], t.dtype) for t in xs_in])
        outer_ops, outer_rng, outer_state = fn.ops, fn.takes_rng, dict(fn.state_values)
        fn.ops = []
        try:
            result = self._call_closure(step, [carry, x], {}, span, frame)
            body = fn.ops
        finally:
            fn.ops = outer_ops
        if fn.takes_rng != outer_rng or fn.state_values != outer_state:
            fn.takes_rng, fn.state_values = outer_rng, outer_state
            raise self.error("AOT362", "randomness and state updates inside jax.lax.scan are "
                             "not supported yet", step.span)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise self.error("AOT363", "a scan step must return (new_carry, y)",
                             step.definition.name_span)
        new_carry, y = result
        carry_out = self._flat_tensors(new_carry, "new carry", step.span)
        if [(t.shape, t.dtype) for t in carry_out] != [(t.shape, t.dtype) for t in carry_in]:
            raise self.error(
                "AOT364", "the scan step must return a carry of the same types as init: got "
                f"{', '.join(t.describe() for t in carry_out)} for "
                f"{', '.join(t.describe() for t in carry_in)}", step.definition.name_span)
        ys = self._flat_tensors(y, "y", step.span) if y is not None else []
        p_carry, p_x = step.params.params[0].name, step.params.params[1].name
        carry_var, x_var = TreeVar("carry"), TreeVar("x")
        prologue = []
        for var, value, name in ((carry_var, carry, p_carry), (x_var, x, p_x)):
            leaves = _tensors(value)
            if isinstance(value, (tuple, list)) and leaves:
                prologue.append(Op("ops/module_call.j2", (("target", _unpack_code(
                    value, value, [])), ("call", Code((var,)))), tuple(leaves), (), span, name))
            elif isinstance(value, Tensor):
                fn.hint(value, name)
        inputs = tuple((name, value if isinstance(value, Tensor) else var)
                       for name, var, value in ((p_carry, carry_var, carry), (p_x, x_var, x)))
        nested = Function(
            name=self._function_name(step.name), doc=f"Scan step `{step.name}`",
            takes_params=False, state_collections=(), takes_rng=False, inputs=inputs,
            body=tuple(prologue + body), result=value_code(result),
            result_tensors=tuple(carry_out + ys), span=step.span, hints=dict(fn.hints))
        final = _rebuild(init, [Tensor(t.shape, t.dtype, t.weak) for t in carry_in])
        stacked = None if y is None else _rebuild(
            y, [Tensor((n, *t.shape), t.dtype) for t in ys])
        outs = _tensors(final) + _tensors(stacked)
        produced = {id(v) for op in body for v in op.outputs} | {id(t) for t in _tensors(carry)}
        produced |= {id(t) for t in _tensors(x)}
        captures = [v for op in body for v in op.inputs() if id(v) not in produced]
        extra = "" if not b["reverse"] else ", reverse=True"
        extra += f", length={n}" if xs is None else ""
        fn.ops.append(Op("ops/scan.j2", (
            ("target", _unpack_code((init, y), (final, stacked), [])),
            ("step", Code((nested.name,))), ("init", value_code(init)),
            ("xs", value_code(xs)), ("extra", Code((extra,))),
            ("captures", Code(tuple(captures)))), tuple(outs), (), span, "scan", nested))
        return (final, stacked)

    def _flat_tensors(self, value: Any, what: str, span: Span) -> list[Tensor]:
        leaves = _leaves(value)
        if not leaves or not all(isinstance(v, Tensor) for v in leaves):
            raise self.error("AOT361", f"jax.lax.scan: {what} must be an array or a tuple of "
                             f"arrays, got {describe_value(value)}", span)
        return leaves  # type: ignore[return-value]

    def _sequential(self, args: list, kwargs: dict, expr: ir.Call) -> "Sequential":
        """`nn.Sequential([...])`: layers applied in order, named in the enclosing scope."""
        if len(args) != 1 or kwargs or not isinstance(args[0], (list, tuple)):
            raise self.error("AOT355", "nn.Sequential takes one list of layers", expr.span)
        for layer in args[0]:
            if not isinstance(layer, (ModuleRef, OpRef, Closure, SharedModule, Sequential)):
                raise self.error("AOT355", f"nn.Sequential layers must be modules (e.g. "
                                 f"nn.Dense.partial(features=8)) or functions, got "
                                 f"{describe_value(layer)}", expr.args[0].span)
        return Sequential(tuple(args[0]))

    def _call_entry(self, entry: Entry | None, written: str, args: list, kwargs: dict,
                    span: Span, frame: Frame) -> Any:
        if entry is None:
            raise InternalError(f"missing operation for {written}", span=span)
        if entry.kind == "layer":
            return self._call_layer(entry, written, args, kwargs, span, frame)
        if frame.fn is None:
            raise self.error("AOT324", f"{written} can only be used inside a module's apply",
                             span)
        return self._call_layer(entry, written, args, kwargs, span, frame)

    def _call_shared(self, shared: SharedModule, args: list, kwargs: dict, span: Span,
                     frame: Frame) -> Any:
        if "name" in kwargs:
            raise self.error("AOT310", "a shared module is named where it is created", span)
        fn, _ = self._need_module_frame(frame, span, shared.ref.class_name)
        if shared.scope.fn is not fn:
            raise self.error("AOT315", "a shared module can only be called in the module that "
                             "created it", span, notes=(Note("created here", shared.span),))
        shared.calls += 1
        if isinstance(shared.ref.module, UserModule):
            return self._call_user_module(shared.ref, args, kwargs, span, frame, shared=shared)
        return self._call_layer(shared.ref.module, f"nn.{shared.ref.class_name}", args, kwargs,
                                span, frame, dict(shared.ref.bound), shared=shared)

    def _call_closure(self, fn: Closure, args: list, kwargs: dict, span: Span,
                      frame: Frame) -> Any:
        bound = self._bind(fn.params, args, kwargs, fn.name, span, defaults=fn.defaults)
        env = Env(fn.env)
        for k, v in bound.items():
            env.set(k, v)
        self.depth += 1
        if self.depth > MAX_CALL_DEPTH:
            self.depth -= 1
            raise self.error("AOT322", f"function {fn.name} recurses too deeply", span)
        errors = self.errors
        try:
            self._exec_block(fn.body, Frame(env, frame.fn, frame.scope, frame.module))
        except _Return as r:
            if self.errors != errors:
                raise _Abort() from None
            return r.value
        finally:
            self.depth -= 1
        if self.errors != errors:
            raise _Abort()
        return None

    def _call_static(self, fn: StaticBuiltin, args: list, kwargs: dict, span: Span) -> Any:
        for a in list(args) + list(kwargs.values()):
            if not is_static(a) and fn.name not in ("len", "tuple", "list", "enumerate", "zip",
                                                    "reversed", "isinstance", "dict"):
                raise self.error("AOT349", f"{fn.name}() is evaluated at build time and needs "
                                 f"static arguments, got {describe_value(a)}", span,
                                 hint="use the jnp function for arrays (jnp.maximum, ...)")
        if fn.name == "len" and args and isinstance(args[0], Tensor):
            if not args[0].shape:
                raise self.error("AOT349", "len() of a 0-d array", span)
            return args[0].shape[0]
        if fn.name == "isinstance":
            raise self.error("AOT349", "isinstance is not supported; compare static values",
                             span)
        if fn.name == "range" and _range_too_long(args):
            raise self.error("AOT330", f"range{tuple(args)} is too long to unroll (more than "
                             f"{MAX_UNROLL:,} items)", span)
        try:
            result = fn.fn(*args, **kwargs)
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
        return result

    def _make_initializer(self, factory: InitializerFactory, args: list, kwargs: dict,
                          span: Span) -> Initializer:
        from .ops.registry import Signature

        sig = Signature.parse(inits.FACTORIES[factory.name])
        try:
            sig.bind(f"nn.initializers.{factory.name}", args, kwargs)
            for v in list(args) + list(kwargs.values()):
                if not is_static(v):
                    raise CallError("AOT203", "initializer arguments must be static")
            return inits.make(factory.name, args, kwargs)
        except (CallError, StaticError) as e:
            raise self.error(getattr(e, "code", "AOT203"), getattr(e, "message", str(e)),
                             span) from None

    def _call_method(self, m: BoundMethod, args: list, kwargs: dict, expr: ir.Call,
                     frame: Frame) -> Any:
        r, span = m.receiver, expr.span
        if isinstance(r, ModuleRef) and m.name == "partial":
            if args:
                raise self.error("AOT350", "partial takes keyword arguments only", span)
            return r.with_bound(kwargs, span)
        if isinstance(r, ModuleRef) and m.name == "shared":
            name = kwargs.pop("name", None)
            if args:
                raise self.error("AOT350", "shared takes keyword arguments only", span)
            fn, scope = self._need_module_frame(frame, span, f"{r.class_name}.shared")
            cls_name = r.module.linen_name if isinstance(r.module, Entry) else r.class_name
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
        if isinstance(r, SelfValue):
            return self._self_method(r, m.name, args, kwargs, span, frame)
        if isinstance(r, Tensor):
            if m.name == "T":
                raise self.error("AOT348", "x.T is an attribute, not a method", span)
            entry = REGISTRY.lookup("array", m.name)
            return self._call_entry(entry, f"x.{m.name}", [r, *args], kwargs, span, frame)
        if isinstance(r, (list, dict, str)):
            return self._static_method(r, m.name, args, kwargs, span)
        raise self.error("AOT348", f"{describe_value(r)} has no method '{m.name}'", span)

    def _static_method(self, r: Any, name: str, args: list, kwargs: dict, span: Span) -> Any:
        allowed = {
            list: {"append", "extend", "insert", "pop", "index", "count", "copy", "reverse"},
            dict: {"get", "items", "keys", "values", "update", "copy", "pop", "setdefault"},
            str: {"format", "join", "upper", "lower", "startswith", "endswith", "replace",
                  "split", "strip"},
        }[type(r)]
        if name not in allowed:
            raise self.error("AOT348", f"method {type(r).__name__}.{name} is not supported",
                             span)
        if name == "format":
            problem = safety.format_problem(r)
            if problem:
                raise self.error("AOT341", f"str.format: {problem}", span)
        try:
            result = getattr(r, name)(*args, **kwargs)
        except Exception as e:
            raise self.error("AOT349", f"{type(r).__name__}.{name}(): {e}", span) from None
        if name in ("items", "keys", "values"):
            return list(result)
        return result

    def _self_method(self, r: SelfValue, name: str, args: list, kwargs: dict, span: Span,
                     frame: Frame) -> Any:
        scope: Scope = r.scope
        fn = scope.fn
        if name == "param":
            try:
                from .ops.registry import Signature

                b = Signature.parse("name, shape, init, dtype=None").bind("self.param", args,
                                                                          kwargs)
                pname, shape, init = b["name"], b["shape"], b["init"]
                if not isinstance(pname, str):
                    raise CallError("AOT351", f"self.param name must be a string, got "
                                    f"{describe_value(pname)}")
                check_name(pname, "parameter name")
                if shape is None:
                    raise CallError("AOT352", "data-dependent parameter shapes (shape=None) are "
                                    "not supported: give the shape explicitly")
                if not (isinstance(shape, (tuple, list)) and all(
                        isinstance(d, int) and not isinstance(d, bool) and d >= 0
                        for d in shape)):
                    raise CallError("AOT351", f"self.param shape must be a tuple of ints, got "
                                    f"{describe_value(shape)}")
                dtype = b["dtype"].name if isinstance(b["dtype"], DType) else "float32"
                if pname in scope.used:
                    raise CallError("AOT311", f"'{pname}' is already used in this module")
                code = scope.param(pname, tuple(shape), dtype, init, span)
            except CallError as e:
                raise self.error(e.code, e.message, span, hint=e.hint, notes=e.notes) from None
            scope.used[pname] = span
            out = Tensor(tuple(shape), dtype)
            fn.emit("ops/call.j2", {"call": code}, (out,), span, pname)
            return out
        if name == "get_param":
            return self._get_param(scope, args, kwargs, span)
        if name == "state":
            return self._user_state(scope, args, kwargs, span)
        module = frame.module.module if frame.module is not None else None
        method = module.method(name) if isinstance(module, UserModule) else None
        if method is not None and name != "apply":
            # Another method of this module: runs in the same scope, sharing parameters.
            env_self = Env(module.globals)
            env_self.set(method.params.params[0].name, r)
            params = ir.Parameters(method.params.params[1:], method.params.span)
            closure = Closure(name, params, method.body, env_self, method.span, method)
            return self._call_closure(closure, args, kwargs, span, frame)
        raise self.error("AOT353", f"self.{name} is not supported", span,
                         hint="modules support self.param, self.state, self.get_param and "
                              "calls to their own @nn.module_method methods")

    def _user_state(self, scope: Scope, args: list, kwargs: dict, span: Span) -> StateVariable:
        """`self.state(name, shape=(), init=zeros, dtype=float32, collection="state")`."""
        from .ops.registry import Signature

        try:
            b = Signature.parse("name, shape=(), init=None, dtype=None, collection='state'").bind(
                "self.state", args, kwargs)
            name, shape, coll = b["name"], b["shape"], b["collection"]
            if not isinstance(name, str) or not name:
                raise CallError("AOT351", "self.state name must be a non-empty string")
            check_name(name, "state variable name")
            if not (isinstance(shape, (tuple, list)) and all(
                    isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
                raise CallError("AOT351", f"self.state shape must be a tuple of ints, got "
                                f"{describe_value(shape)}")
            if not (isinstance(coll, str) and coll.isidentifier()) or coll in _NOT_COLLECTIONS:
                raise CallError("AOT356", f"invalid state collection name {coll!r}",
                                hint="use an identifier such as 'state' or 'cache' (not "
                                     "'params' or 'rng')")
            dtype = b["dtype"].name if isinstance(b["dtype"], DType) else "float32"
            if name in scope.used:
                raise CallError("AOT311", f"'{name}' is already used in this module",
                                notes=(Note("first used here", scope.used[name]),))
            scope.state(coll, name, tuple(shape), dtype, b["init"] or inits.ZEROS, span)
        except CallError as e:
            raise self.error(e.code, e.message, span, hint=e.hint, notes=e.notes) from None
        scope.used[name] = span
        return StateVariable(scope, coll, name, tuple(shape), dtype, span)

    def _state_write(self, var: StateVariable, value: Any, span: Span) -> None:
        if isinstance(value, Poison):
            raise _Abort()
        if not isinstance(value, Tensor) and isinstance(value, (int, float, bool)):
            const = Tensor(var.shape, var.dtype)
            var.scope.fn.emit("ops/call.j2", {"call": Code((
                f"jnp.full({_tuple_code(var.shape)}, {value!r}, jnp.{var.dtype})",))},
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

    def _get_param(self, scope: Scope, args: list, kwargs: dict, span: Span) -> Any:
        """`self.get_param(name)`: a parameter, or a submodule's parameter dict, of this scope."""
        if len(args) != 1 or kwargs or not isinstance(args[0], str):
            raise self.error("AOT354", "self.get_param takes one name: self.get_param(\"embed\")",
                             span)
        name = args[0]
        prefix = scope.prefix + (name,)
        found = {p[len(prefix):]: d for p, d in scope.fn.params.items()
                 if p[:len(prefix)] == prefix}
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

    def _shared_method(self, shared: SharedModule, name: str, args: list, kwargs: dict,
                       span: Span, frame: Frame) -> Any:
        """`embed.attend(x)`, `model.encode(x)`: another entry point of a shared module."""
        module = shared.ref.module
        if isinstance(module, UserModule):
            if module.method(name) is None:
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

    def _bind(self, params: ir.Parameters, args: list, kwargs: dict, what: str, span: Span, *,
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
                bound[p.name] = self.eval(p.default, Frame(defaults_env or self.globals, None,
                                                           None))
            else:
                raise self.error("AOT304", f"{what} is missing required argument '{p.name}'",
                                 span)
        if kwarg is not None:
            bound[kwarg.name] = extra
        return {p.name: bound[p.name] for p in plist if p.name in bound}


# ==================================================================== helpers

_BINOP_NAMES = {"+": "add", "-": "sub", "*": "mul", "/": "truediv", "//": "floordiv",
                "%": "mod", "**": "pow", "@": "matmul", "&": "and", "|": "or", "^": "xor",
                "<<": "lshift", ">>": "rshift", "==": "eq", "!=": "ne", "<": "lt", "<=": "le",
                ">": "gt", ">=": "ge"}

_STATIC_BINOPS = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "%": operator.mod, "**": operator.pow, "&": operator.and_,
    "|": operator.or_, "^": operator.xor, "<<": operator.lshift, ">>": operator.rshift,
    "@": operator.matmul, "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
_STATIC_COMPARE = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge, "in": lambda a, b: a in b,
    "not in": lambda a, b: a not in b, "is": lambda a, b: a is b or a == b and a is None,
    "is not": lambda a, b: not (a is b or a == b and a is None),
}


#: Names a state collection cannot take (they are other arguments of emitted functions).
_NOT_COLLECTIONS = frozenset({"params", "rng", "self"})


def _has_key(value: Any) -> bool:
    """Whether a value is, or contains, a random key."""
    if isinstance(value, RngKey):
        return True
    if isinstance(value, (tuple, list)):
        return any(_has_key(v) for v in value)
    if isinstance(value, dict):
        return any(_has_key(v) for v in value.values())
    return False


def _tuple_code(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


#: Names a generated module already binds (imports, builtins, its own helpers).
_TARGET_NAMES_TAKEN = frozenset(dir(builtins)) | {"jax", "jnp", "np", "optax", "TARGETS",
                                                 "_runtime", "_LABELS"}


def _too_big(op: str, left: Any, right: Any) -> str | None:
    """Describe a static operation whose result would be huge (or take forever), else None."""
    ints = all(isinstance(v, int) for v in (left, right))
    if op == "**" and ints and right > 0 and abs(left) > 1 and \
            right * abs(left).bit_length() > MAX_STATIC_BITS:
        return f"{left} ** {right}"
    if op == "<<" and ints and right > MAX_STATIC_BITS:
        return f"{left} << {right}"
    if op == "%" and isinstance(left, str) and ("*" in left or safety.spec_problem(left)):
        return f"{left!r} % ..."
    if op == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and \
                    len(seq) * n > MAX_STATIC_LEN:
                return f"{type(seq).__name__} of {len(seq)} * {n}"
    return None


def _range_too_long(args: list) -> bool:
    if not all(isinstance(a, int) for a in args) or not 1 <= len(args) <= 3 or \
            (len(args) == 3 and args[2] == 0):
        return False  # range() reports its own error
    r = range(*args)
    return (r.stop - r.start) // (r.step or 1) > MAX_UNROLL


def _array_like(v: Any) -> bool:
    return isinstance(v, (Tensor, int, float, complex, bool))


def _size(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def _short(v: Any) -> str:
    from .ops.registry import _short as short

    return short(v)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _leaves(v)]
    return [value]


def _rebuild(template: Any, leaves: list[Tensor]) -> Any:
    """`template`'s tuple/list structure with its tensor leaves replaced in order."""
    it = iter(leaves)

    def go(v: Any) -> Any:
        if isinstance(v, Tensor):
            return next(it)
        if isinstance(v, tuple):
            return tuple(go(x) for x in v)
        if isinstance(v, list):
            return [go(x) for x in v]
        return v

    return go(template)


def _tensors(value: Any) -> list[Tensor]:
    return [v for v in _leaves(value) if isinstance(v, Tensor)]


def _fresh(value: Any, fn: FunctionState, name: str) -> Any:
    """A function parameter for an argument: tensors become fresh input tensors."""
    if isinstance(value, Tensor):
        t = Tensor(value.shape, value.dtype, value.weak)
        fn.hint(t, name)
        return t
    return value


def _copy_result(value: Any, fn: FunctionState) -> Any:
    if isinstance(value, Tensor):
        return Tensor(value.shape, value.dtype, value.weak)
    if isinstance(value, tuple):
        return tuple(_copy_result(v, fn) for v in value)
    if isinstance(value, list):
        return [_copy_result(v, fn) for v in value]
    return value


def _result_code(value: Any, fn: FunctionState) -> tuple[Code, list[Tensor]]:
    leaves = _tensors(value)
    return value_code(value), leaves


def _unpack_code(template: Any, result: Any, new_state: list[TreeVar]) -> Code:
    """Assignment target for a module call: `y`, `a, b`, `y, new_batch_stats`."""

    def one(v: Any) -> Code:
        if isinstance(v, Tensor):
            return Code((v,))
        if isinstance(v, (tuple, list)):
            inner = Code.join(", ", [one(x) for x in v])
            return Code.of("(", inner, ",)" if len(v) == 1 else ")")
        return Code(("_",))

    main = one(result)
    if not new_state:
        return main
    return Code.join(", ", [main] + [Code((s,)) for s in new_state])


def _state_result(fn: FunctionState) -> tuple[tuple[str, Code], ...]:
    """For each collection, a nested dict display of the current state values."""
    out = []
    for coll in fn.collections:
        tree: dict[str, Any] = {}
        for c, path in fn.state:
            if c != coll:
                continue
            value = None
            # the longest prefix with a value (a submodule subtree) wins over leaves
            for i in range(1, len(path) + 1):
                if (c, path[:i]) in fn.state_values:
                    value = (path[:i], fn.state_values[(c, path[:i])])
                    break
            if value is None:
                value = (path, Code((subscript_path(coll, path),)))
            node = tree
            p, v = value
            for part in p[:-1]:
                node = node.setdefault(part, {})
            node[p[-1]] = v
        out.append((coll, _dict_code(tree)))
    return tuple(out)


def _dict_code(tree: dict[str, Any]) -> Code:
    items = []
    for k, v in tree.items():
        if isinstance(v, dict):
            inner = _dict_code(v)
        elif isinstance(v, Code):
            inner = v
        else:
            inner = Code((v,))
        items.append(Code.of(f'"{k}": ', inner))
    return Code.of("{", Code.join(", ", items), "}")


def _assigned_names(stmt: ir.Stmt) -> list[str]:
    def names(t: ir.Expr) -> list[str]:
        if isinstance(t, ir.Name):
            return [t.id]
        if isinstance(t, (ir.TupleExpr, ir.ListExpr)):
            return [n for e in t.elts for n in names(e)]
        if isinstance(t, ir.Starred):
            return names(t.value)
        return []

    if isinstance(stmt, ir.Assign):
        return [n for t in stmt.targets for n in names(t)]
    if isinstance(stmt, (ir.AugAssign, ir.AnnAssign)):
        return names(stmt.target)
    if isinstance(stmt, ir.For):
        return names(stmt.target)
    if isinstance(stmt, ir.FunctionDef):
        return [stmt.name]  # a def that failed (decorators, defaults) is not "undefined"
    return []


def resolve(model: ir.ModelFile, symbols: Any = None) -> FileProgram:
    """Resolve a parsed model file; raises `BuildError` with every diagnostic found.

    **Arguments:** `symbols`: sizes for symbolic dimensions (`symbolic.Sentinels`).
    """
    return Resolver(model, symbols).run()


__all__ = ["resolve", "Resolver", "BuildError", "Diagnostic", "describe", "Span", "ParamDecl"]
