"""The resolver: runs a model file's top level and resolves its targets."""

from __future__ import annotations

import hashlib
import keyword
from typing import Any

from .. import hardware, ir, padding, quoting
from ..diagnostics import BuildError, Diagnostic, Note, Reporter, Span
from ..ops import CallError, plans
from ..ops.stochastic import KEY_DTYPE, RngKey
from ..program import (
    FileProgram,
    Function,
    ParamDecl,
    TargetProgram,
    Tensor,
    describe,
)
from ..values import (
    Closure,
    MeshSpec,
    ModuleRef,
    RecordClass,
    Spec,
    SpecDType,
    UserModule,
    describe_value,
    walked,
)
from . import meshes, training
from .base import (
    MAX_STEPS,
    Abort,
    Frame,
    OutOfSteps,
    Specialization,
    TargetDecl,
)
from .caches import CachesMixin
from .calls import CallsMixin
from .chex import ChexMixin
from .control import ControlMixin
from .enums import EnumsMixin
from .expressions import ExpressionsMixin
from .helpers import (
    TARGET_NAMES_TAKEN,
    WORK_PER_STEP,
    function_names_taken,
    result_tensors,
    shorten,
)
from .host import HostMixin
from .imports import ImportsMixin
from .initializers import InitializersMixin
from .methods import full_trees
from .modules import ModulesMixin, has_static_leaves
from .rearrange import RearrangeMixin
from .records import RecordsMixin
from .statements import StatementsMixin
from .toplevel import ModuleGlobals
from .transforms import CustomJvpMixin, CustomVjpMixin, TransformsMixin
from .workspace import Workspace

#: Bounds on a target input given as a tree (a batch dict): nesting, arrays, key length.
MAX_INPUT_DEPTH = 16
MAX_INPUT_LEAVES = 1024
MAX_INPUT_KEY = 200


class Resolver(ModulesMixin, StatementsMixin, ExpressionsMixin, CallsMixin, ImportsMixin,
               InitializersMixin, TransformsMixin, CustomJvpMixin, CustomVjpMixin, CachesMixin,
               HostMixin, RecordsMixin, ControlMixin, EnumsMixin, ChexMixin,
               RearrangeMixin):
    """Resolves the targets of one model file (and what they reach in other files)."""

    def __init__(self, model: ir.ModelFile, symbols: Any = None,
                 workspace: Workspace | None = None):
        self.model = model
        #: Sentinel sizes for symbolic dimensions (`symbolic.Sentinels`), or None.
        self.symbols = symbols
        self.workspace = workspace
        self.reporter: Reporter = Reporter()
        #: Module-level names per model file reached (the built file's first).
        self.modules: dict[int, ModuleGlobals] = {}
        self.globals = self.module_globals(model)
        self.targets: list[TargetDecl] = []
        self.cache: dict[Any, Specialization] = {}
        #: Loss functions of training targets by (loss, output and input types).
        self.loss_cache: dict[tuple, tuple[Function, bool]] = {}
        self.functions: list[Function] = []
        self.fn_names: dict[str, int] = {}
        #: `helpers.function_names_taken` of the targets declared so far (their names).
        self.names_taken: tuple[tuple[str, ...], set[str]] = ((), function_names_taken([]))
        #: Emitted initializer functions by (closure, shape, dtype).
        self.init_cache: dict[tuple, str] = {}
        #: The variable being declared said no dtype: a flax.nn initializer `(key, shape)`
        #: may give it the dtype it returns (`initializers.AdoptDtype`).
        self.adopt_dtype: bool = False
        self.depth = 0
        #: A top-level assignment's value is being computed: an array operation defers it
        #: (`base.ImportTimeSignal`) instead of being an error.
        self.import_time: bool = False
        #: `ImportTimeArray`s being evaluated where they are read, innermost last.
        self.import_time_reads: list[Any] = []
        #: The top-level array a top-level statement reads (a target's hyperparameter):
        #: its operations' errors say where such an array can be read.
        self.array_read_at_top: str | None = None
        #: Methods' array defaults by (parameter, names), one `ImportTimeArray` each.
        self.default_arrays: dict[tuple[int, int], Any] = {}
        #: Module and function calls being resolved: (name, call site), innermost last.
        self.calls: list[tuple[str, Span]] = []
        self._reported: set[tuple] = set()
        #: Warnings by where and what they say (a definition reached twice warns once).
        self.warnings: dict[tuple, Diagnostic] = {}
        #: Errors raised so far, repeats included (a body with errors must not produce a value).
        self.errors: int = 0
        self.steps = 0
        walked()  # what earlier resolutions walked is theirs

    def module_globals(self, model: ir.ModelFile) -> ModuleGlobals:
        """The lazily resolved module-level names of `model` (one per file per resolution)."""
        found = self.modules.get(id(model))
        if found is None:
            found = self.modules[id(model)] = ModuleGlobals(model, self)
        return found

    # ================================================================ driver

    def run(self) -> FileProgram:
        targets = []
        try:
            for i in self.globals.roots():
                self._top_level(self.model.body[i].span,
                                lambda i=i: self.globals.execute(i))
            for decl in self.targets:
                got = self._top_level(decl.span, lambda decl=decl: self._resolve_target(decl))
                if got is not None:
                    targets.append(got)
        except OutOfSteps:
            pass
        self.reporter.raise_if_errors()
        targets = full_trees(targets, self.targets)
        executed = tuple((g.model.relpath, frozenset(g.done)) for g in self.modules.values())
        return FileProgram(self.model.relpath, self._sources_sha(), tuple(self.functions),
                           tuple(targets), (), executed=executed,
                           warnings=tuple(self.warnings.values()))

    def warn(self, warning: Diagnostic) -> None:
        """Report `warning` once (the build goes on; the driver prints it)."""
        self.warnings.setdefault((warning.code, warning.span), warning)

    def _sources_sha(self) -> str:
        """sha256 of the file, or of every model file the targets reached (sorted)."""
        files = sorted({g.model.relpath: g.model.file.text for g in self.modules.values()
                        if g.done or g is self.globals}.items())
        if len(files) == 1:
            return hashlib.sha256(files[0][1].encode()).hexdigest()
        h = hashlib.sha256()
        for rel, text in files:
            h.update(rel.encode() + b"\0" + hashlib.sha256(text.encode()).digest())
        return h.hexdigest()

    def _top_level(self, span: Span, fn: Any) -> Any:
        """Resolve one top-level statement or target; Python's recursion limit is an error."""
        try:
            return fn()
        except Abort:
            return None
        except RecursionError:
            self.error("AOT322", "this nests calls or expressions too deeply to resolve "
                       "(recursive functions and modules are not supported)", span)
            return None
        except MemoryError:  # a static value the size limits let through, on a small machine
            self.error("AOT330", "the build ran out of memory resolving this", span,
                       hint="static values are computed at build time; keep them small")
            return None

    def _step(self, span: Span) -> None:
        self.steps += 1 + walked() // WORK_PER_STEP  # deep walks of static values are work
        if self.steps > MAX_STEPS:
            self.error("AOT330", f"resolving this file takes more than {MAX_STEPS:,} build-time "
                       "steps; stopped here", span, hint="look for loops over large ranges, "
                       "runaway recursion or very large static values (strings, lists, ints); "
                       "loops are unrolled at build time")
            raise OutOfSteps()

    def error(self, code: str, message: str, span: Span | None, *, hint: str | None = None,
              notes: tuple[Note, ...] = ()) -> Abort:
        self.errors += 1
        key = (code, message, span.path if span else "", span.line if span else 0,
               span.col if span else 0)
        if key not in self._reported:
            self._reported.add(key)
            if self.calls and span is not None and not any(n.message.startswith("in ")
                                                           for n in notes):
                name, site = self.calls[-1]
                if (site.path, site.line) != (span.path, span.line):
                    notes = (*notes, Note(f"in {name}", site))
            self.reporter.error(code, message, span, hint=hint, notes=notes)
        return Abort()

    def _bind_signature(self, signature: str, written: str, args: list, kwargs: dict,
                        span: Span) -> dict[str, Any]:
        """The arguments of a call the resolver implements itself (`jax.lax.scan`,
        `jax.jvp`, ...) bound to its Python signature; a mismatch is located at the call."""
        from ..ops.registry import Signature

        try:
            return Signature.parse(signature).bind(written, args, kwargs)
        except CallError as e:
            raise self.error(e.code, e.message, span, hint=e.hint) from None

    # ================================================================ targets

    def _resolve_target(self, decl: TargetDecl) -> TargetProgram:
        module = decl.module.module
        if not isinstance(module, UserModule):
            raise self.error("AOT401", "a target must name a user module (class M(nn.Module))",
                             decl.span)
        method = module.method(decl.method)
        if method is None and decl.method == "apply":  # where the fix goes: the class
            raise self.error("AOT321", f"module {module.name} has no apply method",
                             module.cls.name_span, notes=(Note("a target uses it here",
                                                               decl.span),))
        if method is None:
            raise self.error("AOT402", f"module {module.name} has no method '{decl.method}'",
                             decl.span)
        self._check_method_usable(module, decl.method, decl.span)
        names = [p.name for p in method.params.params[1:]]
        unknown = [k for k in decl.specs if k not in names]
        if unknown:
            raise self.error(
                "AOT403", f"target '{decl.name}': {module.name}.{decl.method} has no input "
                f"'{unknown[0]}'", spec_leaves(decl.specs[unknown[0]])[0][1].span,
                hint=f"its arguments are: {', '.join(names)}")
        padding.check_declaration(self, decl, decl.loss is not None)
        kwargs: dict[str, Any] = {}
        symbolic: list[tuple[str, tuple[int | str, ...]]] = []
        leaves: list[tuple[str, tuple[int, ...], str]] = []
        trees: list[tuple[str, Any]] = []
        for k, tree in decl.specs.items():
            kwargs[k] = self._input_value(k, tree, symbolic, leaves, trees)
        spec_ = self._specialize(decl.module, decl.method, [], kwargs, decl.span, entry=True)
        if has_static_leaves(spec_.result):  # made for a caller before: a target's own
            # `return x, 0, {}`: under jax.jit the numbers are arrays; so they are here
            spec_ = self._specialize(decl.module, decl.method, [], kwargs, decl.span,
                                     entry=True, arrays_out=True)
        fn = spec_.function
        missing = [k for k in decl.specs if k not in dict(fn.inputs)]
        if missing:
            raise self.error("AOT405", f"target input '{missing[0]}' is not an array input",
                             spec_leaves(decl.specs[missing[0]])[0][1].span)
        # the arrays crossing the executable boundary, in call order and jax's tree order
        inputs = tuple(leaf for n, _ in fn.inputs for leaf in leaves
                       if leaf[0] == n or leaf[0].startswith(n + "["))
        params = tuple(spec_.params.values())
        state = fn.state  # (c, *path) of each of `spec_.state`, made with the function
        outs = tuple((t.shape, t.dtype) for t in result_tensors(spec_.result))
        hp = ", ".join(f"{k}={shorten(v)}" for k, v in decl.module.bound)
        return TargetProgram(
            name=decl.name, entry=fn.name, function=fn, inputs=inputs, params=params,
            state=state, outputs=outs, stochastic=fn.takes_rng, platforms=decl.platforms,
            devices=decl.devices, description=f"{module.name}.{decl.method}({hp})",
            span=decl.span, symbolic=tuple(symbolic), mesh=decl.mesh,
            arguments=tuple(n for n, _ in fn.inputs), trees=tuple(trees),
            tpu_topologies=decl.tpu, gpu_targets=decl.gpu, processes=decl.processes,
            buckets=decl.serving.buckets, pad_values=decl.serving.pad_values,
            masks=decl.serving.masks,
            param_sharding=meshes.param_specs(self, decl.sharding_rules, decl.mesh, params,
                                              decl.span),
            train=(training.resolve_train(self, decl, spec_, kwargs, decl.span, params)
                   if decl.loss is not None else None),
            init_inputs=fn.init_name is not None)

    def _input_value(self, name: str, tree: Any, symbolic: list, leaves: list,
                     trees: list) -> Any:
        """The value a target input has in the model (an array, a key, or a tree of
        them); records each array's label (`batch["tokens"]`), type and symbolic dims."""
        made: dict[tuple[Any, ...], Any] = {}  # each array by its path
        for path, spec in spec_leaves(tree):
            label = leaf_label(name, path)
            if any(isinstance(d, str) for d in spec.shape):
                symbolic.append((label, tuple(spec.shape)))
            shape = tuple(self._dim_value(d, spec.span) for d in spec.shape)
            dtype = KEY_DTYPE if spec.dtype == "key" else spec.dtype
            leaves.append((label, shape, dtype))
            made[path] = RngKey(shape, dtype) if dtype == KEY_DTYPE else Tensor(shape, dtype)

        def go(node: Any, path: tuple[Any, ...]) -> Any:
            if isinstance(node, Spec):
                return made[path]
            if isinstance(node, dict):
                return {k: go(v, (*path, k)) for k, v in node.items()}
            items = [go(v, (*path, i)) for i, v in enumerate(node)]
            return tuple(items) if isinstance(node, tuple) else items

        if not isinstance(tree, Spec):
            trees.append((name, tree_labels(tree, name)))
        return go(tree, ())

    def _dim_value(self, dim: object, span: Span) -> int:
        """A symbolic dimension resolves as a sentinel size (see `symbolic.py`)."""
        if isinstance(dim, int):
            return dim
        if self.symbols is None:
            raise self.error("AOT404", f"symbolic dimension '{dim}' is not allowed here", span)
        if quoting.identifier_problem(dim):
            raise self.error("AOT410", f"symbolic dimension {str(dim)[:40]!r} must be an "
                             "ASCII identifier such as 'batch'", span)
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
        if isinstance(module, RecordClass) and module.kind == "plain" and \
                "apply" in module.methods:
            raise self._not_a_module(module, call.args[1].span)
        if not isinstance(module, ModuleRef):
            raise self.error("AOT401", f"a target must name a module, got "
                             f"{describe_value(module)}", call.args[1].span)
        # flax.nn's `init` returns the root's parameters themselves: the name a partial gave
        # the module names nothing in them
        module = module.split_name()[0]
        problem = quoting.identifier_problem(name, "target name")
        if problem:
            raise self.error("AOT406", problem, call.args[0].span,
                             hint="a target becomes a module attribute: name it with ASCII "
                                  "letters, digits and '_', e.g. mlp_b8")
        if name.startswith("_") or keyword.iskeyword(name) or name in TARGET_NAMES_TAKEN or \
                isinstance(self.globals.vars.get(name), ModuleRef):
            raise self.error("AOT406", f"target name {name!r} is taken in the generated module "
                             "(a Python keyword, builtin, import or module function, or a "
                             "private name: '_' starts the module's helpers)",
                             call.args[0].span,
                             hint=f"call it {name.strip('_') or 'my'}_target, for example")
        if any(t.name == name for t in self.targets):
            raise self.error("AOT407", f"target '{name}' is declared twice", span)
        explicit = "platforms" in kwargs
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
        platforms, tpu, gpu = hardware.target_hardware(
            self, tuple(platforms), explicit, kwargs.pop("tpu", None), kwargs.pop("gpu", None),
            int(devices), {k: next((kw.span for kw in call.keywords if kw.name == k), span)
                           for k in ("tpu", "gpu")})
        if not isinstance(method, str):
            raise self.error("AOT400", f"method= must be a method name, got "
                             f"{describe_value(method)}", span)
        serving = padding.declaration(self, kwargs, call, span)
        loss = kwargs.pop("loss", None) if train else None
        optimizer = kwargs.pop("optimizer", None) if train else None
        if train and not (isinstance(loss, Closure) and loss.toplevel):
            raise self.error("AOT423", "aot.train_target needs loss=, a function of the model "
                             "file: loss(model_output, *batch) -> scalar", span)
        if train and optimizer is None:
            raise self.error("AOT422", "aot.train_target needs optimizer=, e.g. "
                             "optimizer=optax.adam(1e-3)", span)
        after_update, microbatches = training.train_options(self, call, kwargs, train)
        processes = meshes.processes(self, call, kwargs, mesh, int(devices))
        specs: dict[str, Any] = {}
        for k, v in kwargs.items():
            kw = next((kw for kw in call.keywords if kw.name == k), None)
            specs[k] = self._input_spec(k, v, kw.span if kw else span)
        trees = [k for k, v in specs.items() if not isinstance(v, Spec)]
        if trees:
            self._check_tree_inputs(trees[0], specs[trees[0]], serving, processes,
                                    microbatches, span)
        meshes.check_fixed_shapes(self, processes, specs)
        batch: dict[str, Spec] = {}
        if train:
            method_def = module.module.method(method)
            model_inputs = {p.name for p in method_def.params.params[1:]} if method_def else set()
            batch = {k: v for k, v in specs.items() if k not in model_inputs}
            specs = {k: v for k, v in specs.items() if k in model_inputs}
        self.targets.append(TargetDecl(name, module, specs, method, tuple(platforms),
                                       int(devices), span, loss, optimizer, batch, mesh,
                                       sharding_rules or (), tpu, gpu, after_update,
                                       microbatches, processes, serving))

    def _input_spec(self, name: str, value: Any, span: Span, depth: int = 0) -> Any:
        """A target input: a spec (`aot.f32[8, 784]`, `aot.key`), or a tree of them
        (dicts with string keys, tuples, lists), checked to be one."""
        if isinstance(value, SpecDType) and value.dtype == "key":  # `z_rng=aot.key`: one key
            return Spec((), "key", span)
        if isinstance(value, Spec):
            return value
        if depth >= MAX_INPUT_DEPTH:
            raise self.error("AOT409", f"target input '{name}' nests deeper than "
                             f"{MAX_INPUT_DEPTH} levels", span)
        if isinstance(value, dict) and value:
            for k in value:
                if not isinstance(k, str) or len(k) > MAX_INPUT_KEY:
                    raise self.error(
                        "AOT409", f"target input '{name}' is a dict keyed by "
                        f"{describe_value(k)[:60]}; the keys of an input dict are strings "
                        f"of at most {MAX_INPUT_KEY} characters", span,
                        hint="key the arrays by name: batch={\"tokens\": aot.i32[8, 128]}")
            tree: Any = {k: self._input_spec(name, v, span, depth + 1) for k, v in value.items()}
        elif type(value) in (tuple, list) and value:
            items = [self._input_spec(name, v, span, depth + 1) for v in value]
            tree = tuple(items) if isinstance(value, tuple) else items
        else:
            raise self.error(
                "AOT409", f"target input '{name}' must be a spec such as aot.f32[8, 784] "
                f"(or a dict, tuple or list of specs), got {describe_value(value)}", span,
                hint="bind hyperparameters with Module.partial(...)")
        if depth == 0 and len(spec_leaves(tree)) > MAX_INPUT_LEAVES:
            raise self.error("AOT409", f"target input '{name}' has more than "
                             f"{MAX_INPUT_LEAVES} arrays", span)
        return tree

    def _check_tree_inputs(self, name: str, tree: Any, serving: Any, processes: int,
                           microbatches: int, span: Span) -> None:
        """What cannot take a tree input yet: serving buckets (pad_value=, masks=), a
        target over several processes, microbatches."""
        where = spec_leaves(tree)[0][1].span
        if serving.buckets:
            raise self.error("AOT415", f"target input '{name}' is a tree of arrays, and a "
                             "target with buckets= takes array inputs only (buckets, "
                             "pad_value= and masks= name inputs)", where,
                             notes=(Note("buckets declared here", serving.spans["buckets"]),),
                             hint="declare each array as an input of its own and build "
                                  "the dict inside apply")
        for what, n in (("processes", processes), ("microbatches", microbatches)):
            if n > 1:
                raise self.error("AOT415", f"target input '{name}' is a tree of arrays, and "
                                 f"a target with {what}={n} takes array inputs only", where,
                                 notes=(Note("declared by this target", span),),
                                 hint="declare each array as an input of its own and build "
                                      "the dict inside apply")


def leaf_label(name: str, path: tuple[Any, ...]) -> str:
    """`batch["tokens"][0]`: an array of a tree input, its keys quoted as data."""
    return name + "".join(f"[{quoting.literal(k)}]" for k in path)


def tree_labels(tree: Any, name: str, path: tuple[Any, ...] = ()) -> Any:
    """A tree input's structure with the label of each array at its leaves."""
    if isinstance(tree, Spec):
        return leaf_label(name, path)
    if isinstance(tree, dict):
        return {k: tree_labels(v, name, (*path, k)) for k, v in tree.items()}
    items = [tree_labels(v, name, (*path, i)) for i, v in enumerate(tree)]
    return tuple(items) if isinstance(tree, tuple) else items


def spec_leaves(tree: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Spec]]:
    """(path, spec) of every spec of a target input, in jax's order (dict keys sorted)."""
    if isinstance(tree, Spec):
        return [(path, tree)]
    if isinstance(tree, dict):
        return [p for k in sorted(tree) for p in spec_leaves(tree[k], (*path, k))]
    return [p for i, v in enumerate(tree) for p in spec_leaves(v, (*path, i))]


def resolve(model: ir.ModelFile, symbols: Any = None,
            workspace: Workspace | None = None) -> FileProgram:
    """Resolve a parsed model file's targets; raises `BuildError` with every diagnostic found.

    **Arguments:** `symbols`: sizes for symbolic dimensions (`symbolic.Sentinels`);
    `workspace`: the build's model files, for imports between them.
    """
    plans.clear()  # shape plans serve one build (and a benchmark's runs never share them)
    resolver = Resolver(model, symbols, workspace)
    try:
        return resolver.run()
    finally:
        # The program keeps module-level values (a target's loss closure), whose globals
        # point back at the resolver: cut that link, so the resolver and everything only
        # it holds are freed by reference counting instead of by the cyclic collector
        # (a second of collections on a large build, bench/static_stages.py).
        for g in resolver.modules.values():
            g.resolver = None


__all__ = ["resolve", "Resolver", "BuildError", "Diagnostic", "describe", "Span", "ParamDecl"]
