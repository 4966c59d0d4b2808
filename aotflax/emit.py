"""Emit: a resolved `FileProgram` -> the text of a generated JAX module.

Naming happens here, with liveness: a value takes the DSL variable it was
assigned to (or its op's stem: `dense`, `conv`), reusing a name whose previous
value is dead and adding a suffix otherwise, so the output reads like the
model while staying correct SSA.  Templates under `templates/` lay out the
text; they receive strings only.  The emitter parses its own output before
returning it: emitting invalid Python is an internal error.
"""

from __future__ import annotations

import builtins
import dataclasses
import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from . import __version__, target_names
from .diagnostics import InternalError
from .program import FileProgram, Function, Op, ParamDecl, TargetProgram, Tensor, Var
from .program import describe as describe_aval
from .quoting import QuotingError, comment, docstring, identifier, literal, string
from .scopes import name_hash
from .shapes import size

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
if not TEMPLATES.is_dir():  # installed wheel: templates ship inside the package
    TEMPLATES = Path(__file__).resolve().parent / "templates"

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
    # templates do not change during a build: no file stat on every lookup
    auto_reload=False,
)

_NP = re.compile(r"(?<![\w.])np\.")

#: Names generated code may never bind.
RESERVED = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {
    "jax", "jnp", "np", "_runtime", "params", "state", "rng", "self"}


#: Longest variable name taken from a DSL name; longer ones are cut.
_MAX_STEM = 40


def template(name: str) -> jinja2.Template:
    return _ENV.get_template(name)


# ------------------------------------------------------------------ naming


class Namer:
    """Assigns variable names to the values of one function (see module docstring)."""

    def __init__(self, fn: Function, reserved: set[str]):
        self.fn = fn
        self.reserved = reserved
        self.names: dict[int, str] = {}
        self.holder: dict[str, int] = {}  # name -> index of last use of its current value
        self.last_use: dict[int, int] = {}
        self.live = live_ops(fn)
        for i, op in enumerate(fn.body):
            if self.live[i]:
                for v in op.inputs():
                    self.last_use[id(v)] = i
        end = len(fn.body)
        for v in fn.result.vars():
            self.last_use[id(v)] = end
        for _, code in fn.state_result:
            for v in code.vars():
                self.last_use[id(v)] = end

    def bind_input(self, name: str, var: Var) -> None:
        self.names[id(var)] = name
        self.holder[name] = self.last_use.get(id(var), -1)

    def name_outputs(self, i: int, op: Op) -> None:
        taken: set[str] = set()  # one op's outputs never share a name
        for var in op.outputs:
            if id(var) not in self.last_use:
                self.names[id(var)] = "_"  # never read
                continue
            stem = self.fn.hints.get(id(var)) or op.stem
            name = self._free(_identifier(stem), i, avoid=taken)
            taken.add(name)
            self.names[id(var)] = name
            self.holder[name] = self.last_use.get(id(var), i)

    def temps(self, i: int, op: Op) -> dict[str, str]:
        out = {}
        for t in op.temps:
            name = self._free(t, i, strict=True)
            out[t] = name
            self.holder[name] = i
        return out

    def _free(self, stem: str, i: int, strict: bool = False,
              avoid: set[str] | frozenset[str] = frozenset()) -> str:
        n = 0
        while True:
            name = stem if n == 0 else f"{stem}_{n}"
            held = self.holder.get(name)
            dead = held is None or held < i or (not strict and held <= i)
            if name not in self.reserved and name not in avoid and dead:
                return name
            n += 1


def live_ops(fn: Function) -> list[bool]:
    """Which ops of `fn` compute something it uses (a backward liveness pass).

    Ops are pure, so one whose outputs are all unused (a constant a rule made and then
    wrote inline, a layer whose result the model drops) is left out of the generated code.
    """
    needed = {id(v) for v in fn.result.vars()}
    for _, code in fn.state_result:
        needed.update(id(v) for v in code.vars())
    live = [False] * len(fn.body)
    for i in range(len(fn.body) - 1, -1, -1):
        op = fn.body[i]
        if not op.outputs or any(id(v) in needed for v in op.outputs):
            live[i] = True
            needed.update(id(v) for v in op.inputs())
    return live


def _identifier(stem: str, lower: bool = True) -> str:
    """A variable-name stem from a DSL name or op: ASCII, short (lower-case for stems)."""
    stem = stem.lower() if lower else stem
    out = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_"
                  for c in stem[:_MAX_STEM]) or "v"
    return out if not out[0].isdigit() else "v" + out


def _free_name(stem: str, taken: set[str]) -> str:
    """`stem`, or `stem_1`, `stem_2`, ...: the first not in `taken` (which it joins)."""
    base = _identifier(stem, lower=False)
    name, n = base, 0
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


# ------------------------------------------------------------------ functions


def _comment(relpath: str, op: Op) -> str:
    """`models/net.py:12`: the DSL line (in the file it is in: models import each other)."""
    return f"{op.span.file.name or relpath}:{op.span.line}"


def _shapes(op: Op) -> str:
    return ", ".join(v.describe() for v in op.outputs if isinstance(v, Tensor))


def render_functions(fn: Function, relpath: str, reserved: set[str]) -> list[str]:
    """A function and, when it initializes parameters from data, its init variant."""
    if fn.init_name is None:
        return [render_function(fn, relpath, reserved)]
    apply = dataclasses.replace(fn, body=tuple(op for op in fn.body if not op.init_only))
    init = dataclasses.replace(
        fn, name=fn.init_name, takes_rng=True,
        doc=f"{fn.doc}, init variant: also initializes the parameters that come from data "
            f"(writing them into params)",
        body=tuple(op if op.init_args is None else dataclasses.replace(op, args=op.init_args)
                   for op in fn.body))
    return [render_function(apply, relpath, reserved), render_function(init, relpath, reserved)]


def render_function(fn: Function, relpath: str, reserved: set[str],
                    outer: dict[int, str] | None = None,
                    outer_live: set[str] | frozenset[str] = frozenset()) -> str:
    """Render one function.

    For a nested def, `outer` names the enclosing function's values and `outer_live`
    are the names it holds: the nested body's variables never overwrite them.
    """
    # state and shared-module reads are written as `batch_stats["..."]` text: no variable
    # may take those names
    collections = [_checked(c, "state collection name") for c in fn.state_collections]
    shared = [_checked(a, "argument name") for a in fn.shared_args]
    namer = Namer(fn, reserved | set(outer_live) | {_checked(fn.name, "function name")} |
                  set(collections) | set(shared))
    if outer:
        namer.names.update(outer)
    args: list[str] = []
    if fn.takes_params:
        args.append("params")
    for coll in collections:
        namer.bind_input(coll, _Placeholder())
        args.append(coll)
    # inputs are passed by position: a DSL name that is taken (`params`, a collection,
    # a builtin, a module function, an outer value the body reads) is renamed
    mine = {id(v) for _, v in fn.inputs}
    captured = {outer[id(v)] for op in fn.body for v in op.inputs()
                if outer and id(v) in outer and id(v) not in mine}
    static = [_checked(a, "argument name") for a in fn.static_args]
    taken = (set(namer.reserved) - set(outer_live)) | captured | set(args) | set(static) | \
        set(shared)
    for name, var in fn.inputs:
        local = _free_name(name, taken)
        namer.bind_input(local, var)
        args.append(local)
    for name in shared:
        namer.bind_input(name, _Placeholder())
        args.append(name)
    args += static
    if fn.takes_rng:
        args += ["*", "rng"]
    lines: list[str] = []
    for i, op in enumerate(fn.body):
        if not namer.live[i]:
            continue
        if op.nested is not None:
            live = set(namer.names.values()) | set(namer.holder)
            text = render_function(op.nested, relpath, reserved | {fn.name},
                                   outer=namer.names, outer_live=live)
            lines.extend(text.rstrip("\n").split("\n"))
        namer.name_outputs(i, op)
        ctx: dict[str, Any] = {k: code.render(namer.names) for k, code in op.args}
        ctx.update(namer.temps(i, op))
        named = [namer.names[id(v)] for v in op.outputs]
        ctx["out"] = named[0] if named else "_"
        ctx["outs"] = ", ".join(named) if named else "_"
        rendered = template(op.template).render(**ctx).rstrip("\n").split("\n")
        where = _comment(relpath, op)
        for j, line in enumerate(rendered):
            shapes = _shapes(op) if j == len(rendered) - 1 else ""
            lines.append(f"{line}  # {comment(where)}" + (f"  {shapes}" if shapes else ""))
    result = fn.result.render(namer.names)
    if fn.state_result:
        result = ", ".join([result] + [c.render(namer.names) for _, c in fn.state_result])
    return template("function.py.j2").render(
        name=fn.name, args=", ".join(args),
        decorators=[".".join(_checked(part, "decorator name") for part in d.split("."))
                    for d in fn.decorators],
        doc=docstring(f"{fn.doc}, from {fn.span.file.name or relpath}:{fn.span.line}."),
        lines=lines, result=result)


class _Placeholder(Var):
    __slots__ = ()


def _checked(name: str, what: str) -> str:
    """A name resolve produced for generated code; resolve checked it, so a bad one is a bug."""
    try:
        return identifier(name, what)
    except QuotingError as e:
        raise InternalError(f"emit: {e}") from None


# ------------------------------------------------------------------ targets


def _nested(decls: tuple[ParamDecl, ...], leaf) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for d in decls:
        node = tree
        for part in d.path[:-1]:
            node = node.setdefault(part, {})
        node[d.path[-1]] = leaf(d)
    return tree


def _dict_lines(tree: dict[str, Any], indent: int) -> list[str]:
    pad = " " * indent
    out = []
    for k, v in tree.items():
        if isinstance(v, dict) and not v:
            out.append(f"{pad}{string(k)}: {{}},")
        elif isinstance(v, dict):
            out.append(f"{pad}{string(k)}: {{")
            out.extend(_dict_lines(v, indent + 4))
            out.append(f"{pad}}},")
        else:
            out.append(f"{pad}{string(k)}: {v},")
    return out


def _tree_code(decls: tuple[ParamDecl, ...], leaf, indent: int) -> str:
    if not decls:
        return "{}"
    body = _dict_lines(_nested(decls, leaf), indent + 4)
    return "{\n" + "\n".join(body) + "\n" + " " * indent + "}"


def _init_tree_code(decls: tuple[ParamDecl, ...], indent: int) -> str:
    """The parameters `init` computes with initializers; a parameter initialized from data
    leaves an empty dict where it goes (its module's init variant writes it)."""
    tree: dict[str, Any] = {}
    for d in decls:
        node = tree
        for part in d.path[:-1]:
            node = node.setdefault(part, {})
        if not d.from_data:
            node[d.path[-1]] = _init_leaf(d)
    if not tree:
        return "{}"
    return "{\n" + "\n".join(_dict_lines(tree, indent + 4)) + "\n" + " " * indent + "}"


def _sds(d: ParamDecl) -> str:
    return f"jax.ShapeDtypeStruct({_tuple(d.shape)}, {_dtype(d.dtype)})"


def _tuple(shape: tuple[int, ...]) -> str:
    return literal(tuple(int(d) for d in shape))


def _dtype(name: str) -> str:
    """`jnp.float32`; a typed random key's dtype is the default implementation's."""
    if name.startswith("key<"):
        return "jax.random.key(0).dtype"
    return "jnp." + _checked(name, "dtype name")


def _init_leaf(d: ParamDecl, key_var: str = "rng") -> str:
    key = f"jax.random.fold_in({key_var}, {name_hash('/'.join(d.path))})"
    return f"{d.init}({key}, {_tuple(d.shape)}, {_dtype(d.dtype)})"


def render_train(t: TargetProgram, local: dict[str, str], call: str, results: str,
                 new_state: str) -> str:
    """The loss, optimizer and train step of a training target.

    `local` maps each input and batch name to its name inside the generated functions.
    """
    train = t.train
    assert train is not None
    names = [local[n] for n, _, _ in t.inputs] + [local[n] for n, _, _ in train.batch]
    loss_args = ", ".join(["outputs", *(local[n] for n in train.loss_inputs)])
    labels = ""
    if train.labels:
        tree: dict[str, Any] = {}
        for path, label in train.labels:
            node = tree
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = string(label)
        var = target_names.labels_variable(t.name)
        labels = (f"#: Parameter groups of `{t.name}`, from its ModelParamTraversal filters.\n"
                  f"{var} = {{\n" + "\n".join(_dict_lines(tree, 4)) + "\n}\n\n")
    loss_name = _checked(train.loss.name, "function name")
    return template("train.py.j2").render(
        name=t.name, arg_names=", ".join(names),
        loss_doc=docstring(f"Loss of target `{t.name}`: {loss_name} of {t.description}."),
        call=call, results=results, new_state=new_state,
        loss_target="loss, metrics" if train.has_metrics else "loss",
        metrics="metrics" if train.has_metrics else "{}",
        loss_call=f"{loss_name}({loss_args})", optimizer=train.optimizer, labels=labels)


def _trees_key(t: TargetProgram) -> tuple:
    """Targets with equal parameter and state trees share one init and one shape tree."""
    def tree(decls: tuple[ParamDecl, ...]) -> tuple:
        return tuple((d.path, d.shape, d.dtype, d.init) for d in decls)

    # an init that runs a forward pass (data-dependent initialization) is the entry's own
    return tree(t.params), tree(t.state), t.entry if t.init_inputs else None


def render_target(t: TargetProgram, source_sha256: str, module_name: str,
                  relpath: str | None = None, shared: str | None = None,
                  reserved: set[str] | frozenset[str] = RESERVED) -> str:
    """One target's functions and its `_runtime.Target`.

    `shared` names an earlier target of the file with the same parameter and state
    trees: this one then reuses its `init` and shape trees instead of repeating them.
    `reserved` are the names the module binds (its functions): inputs never shadow them.
    """
    fn = t.function
    _checked(t.name, "target name")
    entry = _checked(t.entry, "function name")
    # the templates' own locals and the module's names stay untouched: an input named
    # `params`, `loss` or like a module function gets another local name
    taken = set(reserved) | target_names.TEMPLATE_LOCALS
    collections = [_checked(c, "state collection name") for c in fn.state_collections]
    new = {c: _free_name(f"new_{c}", taken) for c in collections}
    batch_specs = t.train.batch if t.train is not None else ()
    local = {n: _free_name(n, taken) for n, _, _ in (*t.inputs, *batch_specs)}
    call_args = []
    if fn.takes_params:
        call_args.append("params")
    call_args += [f"state[{string(c)}]" for c in collections]
    call_args += [local[n] for n, _ in fn.inputs]
    if fn.takes_rng:
        call_args.append("rng=rng")
    results = ", ".join(["outputs"] + [new[c] for c in collections])
    new_state = "{" + ", ".join(f"{string(c)}: {new[c]}" for c in collections) + "}"
    symbolic = dict(t.symbolic)
    # Symbolic dimensions are 1 in INPUTS; `symbolic=` names them (see runtime Target).
    inputs = ", ".join(
        f"{string(n)}: jax.ShapeDtypeStruct("
        f"{_tuple(tuple(1 if isinstance(x, str) else x for x in symbolic.get(n, s)))}, "
        f"{_dtype(d)})" for n, s, d in t.inputs)
    symbolic_code = "{" + ", ".join(f"{string(n)}: {literal(tuple(dims))}"
                                    for n, dims in t.symbolic) + "}"
    call = f"{entry}({', '.join(call_args)})"
    train = ""
    train_kwargs = ""
    if t.train is not None:
        train = render_train(t, local, call, results, new_state)
        batch = ", ".join(f"{string(n)}: jax.ShapeDtypeStruct({_tuple(s)}, {_dtype(d)})"
                          for n, s, d in t.train.batch)
        train_kwargs = (f"    train_step=_{t.name}_train_step,\n    init_opt=_{t.name}_init_opt,\n"
                        f"    batch={{{batch}}},\n")
    if t.mesh:
        tree: dict[str, Any] = {}
        for path, spec in t.param_sharding:
            node = tree
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = literal(tuple(spec))
        mesh = "{" + ", ".join(f"{string(n)}: {literal(k)}" for n, k in t.mesh) + "}"
        sharding = "{\n" + "\n".join(_dict_lines(tree, 8)) + "\n    }" if tree else "{}"
        train_kwargs += f"    mesh={mesh},\n    param_sharding={sharding},\n"
    if t.tpu_topologies:  # names checked by hardware.parse_tpu_topology: [a-z0-9:x] only
        train_kwargs += f"    tpu_topologies={literal(tuple(t.tpu_topologies))},\n"
    if t.gpu_targets:  # names of hardware.GPU_TARGETS
        train_kwargs += f"    gpu_targets={literal(tuple(t.gpu_targets))},\n"
    state_for_init = tuple(ParamDecl(d.path, d.shape, d.dtype, d.init, d.span) for d in t.state)
    if shared is None:
        init_call = ""
        if t.init_inputs and fn.init_name is not None:
            args = ", ".join(["params", *(f"state[{string(c)}]" for c in collections),
                              *(local[n] for n, _ in fn.inputs), "rng=rng"])
            init_call = f"{_checked(fn.init_name, 'function name')}({args})"
        init_def = template("init.py.j2").render(
            name=t.name, params_init=_init_tree_code(t.params, 4),
            state_init=_tree_code(state_for_init, _init_leaf, 4),
            input_names="".join(f", {local[n]}" for n, _, _ in t.inputs)
            if t.init_inputs else "",
            init_call=init_call).rstrip("\n") + "\n\n\n"
        init_name, param_shapes = f"_{t.name}_init", _tree_code(t.params, _sds, 4)
        state_shapes = _tree_code(t.state, _sds, 4)
    else:
        init_name = f"_{_checked(shared, 'target name')}_init"
        init_def, param_shapes, state_shapes = "", f"{shared}.PARAM_SHAPES", f"{shared}.STATE_SHAPES"
    inputs_doc = ", ".join(f"{n}: {describe_aval(s, d)}" for n, s, d in t.inputs)
    outputs_doc = ", ".join(describe_aval(s, d) for s, d in t.outputs)
    return (train.rstrip("\n") + "\n\n\n" if train else "") + init_def + template(
        "target.py.j2").render(
        train_kwargs=train_kwargs, init_name=init_name,
        name=t.name, name_literal=string(t.name),
        apply_doc=docstring(f"{t.description} on {inputs_doc} -> {outputs_doc}."),
        input_names=", ".join(local[n] for n, _, _ in t.inputs),
        call=call, results=results, new_state=new_state,
        param_shapes=param_shapes, state_shapes=state_shapes,
        inputs="{" + inputs + "}", stochastic=literal(bool(t.stochastic)),
        platforms=literal(tuple(t.platforms)), devices=literal(int(t.devices)),
        module=string(module_name), where=comment(f"{relpath or t.span.path}:{t.span.line}"),
        symbolic=symbolic_code, source_sha256=string(source_sha256),
        nparams=sum(size(d.shape) for d in t.params),
        init_inputs=t.init_inputs,
    )


# ------------------------------------------------------------------ files


@dataclass(frozen=True)
class Emitted:
    """The generated text of one model file."""

    relpath: str
    text: str


def emit_file(program: FileProgram, module_name: str) -> str:
    """Render a whole generated module; checks that it parses."""
    reserved = set(RESERVED) | {f.name for f in program.functions} | {
        f.init_name for f in program.functions if f.init_name} | {
        u.name for u in program.user_functions}
    functions = [text for fn in program.functions
                 for text in render_functions(fn, program.relpath, reserved)]
    module_names = reserved | {"TARGETS"} | {
        name for t in program.targets for name in target_names.target_globals(t.name)}
    first: dict[tuple, str] = {}
    targets = []
    for t in program.targets:
        key = _trees_key(t)
        targets.append(render_target(t, program.source_sha256, module_name, program.relpath,
                                     shared=first.get(key), reserved=module_names))
        first.setdefault(key, t.name)
    depth = module_name.count(".")
    body = "\n".join(functions + targets)
    user = [u.source.strip("\n") for u in program.user_functions]
    text = template("module.py.j2").render(
        doc=docstring(f"Generated by aotflax {__version__} from {program.relpath}. Do not edit."),
        source_sha256=docstring(program.source_sha256),
        runtime_import=f"from {'.' * (depth + 1)} import _runtime",
        uses_np=bool(_NP.search(body)) or any(_NP.search(u) for u in user),
        user_functions=user, functions=functions, targets=targets,
        targets_dict="{" + ", ".join(f"{string(t.name)}: {_checked(t.name, 'target name')}"
                                     for t in program.targets) + "}",
    )
    try:  # compile, not ast.parse: the same syntax check at half the cost
        compile(text, program.relpath, "exec", dont_inherit=True)
    except SyntaxError as e:
        raise InternalError(f"emitted code for {program.relpath} does not parse: {e}",
                            dump=_numbered(text, e.lineno or 0)) from None
    return text


def _numbered(text: str, around: int) -> str:
    lines = text.splitlines()
    lo, hi = max(0, around - 5), min(len(lines), around + 5)
    return "\n".join(f"{i + 1:5d} | {lines[i]}" for i in range(lo, hi))
