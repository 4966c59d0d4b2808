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

from . import __version__
from .diagnostics import InternalError
from .program import FileProgram, Function, Op, ParamDecl, TargetProgram, Tensor, Var
from .program import describe as describe_aval
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


def template(name: str) -> jinja2.Template:
    return _ENV.get_template(name)


def docstring_text(text: str) -> str:
    """Text safe inside a triple-quoted docstring (hyperparameter strings are user data)."""
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return text[:-1] + '\\"' if text.endswith('"') else text


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


def _identifier(stem: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in stem.lower()) or "v"
    return out if not out[0].isdigit() else "v" + out


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
                    outer: dict[int, str] | None = None) -> str:
    """Render one function; `outer` names the enclosing function's values (for nested defs)."""
    # state and shared-module reads are written as `batch_stats["..."]` text: no variable
    # may take those names
    namer = Namer(fn, reserved | {fn.name} | set(fn.state_collections) | set(fn.shared_args))
    if outer:
        namer.names.update(outer)
    args: list[str] = []
    if fn.takes_params:
        args.append("params")
    for coll in fn.state_collections:
        namer.bind_input(coll, _Placeholder())
        args.append(coll)
    for name, var in fn.inputs:
        namer.bind_input(name, var)
        args.append(name)
    for name in fn.shared_args:
        namer.bind_input(name, _Placeholder())
        args.append(name)
    args += list(fn.static_args)
    if fn.takes_rng:
        args += ["*", "rng"]
    lines: list[str] = []
    for i, op in enumerate(fn.body):
        if not namer.live[i]:
            continue
        if op.nested is not None:
            live = set(namer.names.values()) | set(namer.holder)
            text = render_function(op.nested, relpath, reserved | live | {fn.name},
                                   outer=namer.names)
            lines.extend(text.rstrip("\n").split("\n"))
        namer.name_outputs(i, op)
        ctx: dict[str, Any] = {k: code.render(namer.names) for k, code in op.args}
        ctx.update(namer.temps(i, op))
        named = [namer.names[id(v)] for v in op.outputs]
        ctx["out"] = named[0] if named else "_"
        ctx["outs"] = ", ".join(named) if named else "_"
        text = template(op.template).render(**ctx).rstrip("\n").split("\n")
        where = _comment(relpath, op)
        for j, line in enumerate(text):
            shapes = _shapes(op) if j == len(text) - 1 else ""
            lines.append(f"{line}  # {where}" + (f"  {shapes}" if shapes else ""))
    result = fn.result.render(namer.names)
    if fn.state_result:
        result = ", ".join([result] + [c.render(namer.names) for _, c in fn.state_result])
    return template("function.py.j2").render(
        name=fn.name, args=", ".join(args), decorators=fn.decorators,
        doc=docstring_text(f"{fn.doc}, from {fn.span.file.name or relpath}:{fn.span.line}."),
        lines=lines, result=result)


class _Placeholder(Var):
    __slots__ = ()


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
            out.append(f'{pad}"{k}": {{}},')
        elif isinstance(v, dict):
            out.append(f'{pad}"{k}": {{')
            out.extend(_dict_lines(v, indent + 4))
            out.append(f"{pad}}},")
        else:
            out.append(f'{pad}"{k}": {v},')
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
    return f"jax.ShapeDtypeStruct({_tuple(d.shape)}, jnp.{d.dtype})"


def _tuple(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _init_leaf(d: ParamDecl, key_var: str = "rng") -> str:
    key = f"jax.random.fold_in({key_var}, {name_hash('/'.join(d.path))})"
    return f"{d.init}({key}, {_tuple(d.shape)}, jnp.{d.dtype})"


def render_train(t: TargetProgram, call: str, results: str, new_state: str) -> str:
    """The loss, optimizer and train step of a training target."""
    train = t.train
    assert train is not None
    names = [n for n, _, _ in t.inputs] + [n for n, _, _ in train.batch]
    loss_args = ", ".join(["outputs", *train.loss_inputs])
    labels = ""
    train_opt = train.optimizer
    if train.labels:
        tree: dict[str, Any] = {}
        for path, label in train.labels:
            node = tree
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = f'"{label}"'
        var = f"_{t.name}_labels"
        labels = (f"#: Parameter groups of `{t.name}`, from its ModelParamTraversal filters.\n"
                  f"{var} = {{\n" + "\n".join(_dict_lines(tree, 4)) + "\n}\n\n")
        train_opt = train.optimizer.replace("_LABELS", var)
    return template("train.py.j2").render(
        name=t.name, arg_names=", ".join(names), description=t.description,
        loss_name=train.loss.name, call=call, results=results, new_state=new_state,
        loss_target="loss, metrics" if train.has_metrics else "loss",
        metrics="metrics" if train.has_metrics else "{}",
        loss_call=f"{train.loss.name}({loss_args})", optimizer=train_opt, labels=labels)


def _trees_key(t: TargetProgram) -> tuple:
    """Targets with equal parameter and state trees share one init and one shape tree."""
    def tree(decls: tuple[ParamDecl, ...]) -> tuple:
        return tuple((d.path, d.shape, d.dtype, d.init) for d in decls)

    # an init that runs a forward pass (data-dependent initialization) is the entry's own
    return tree(t.params), tree(t.state), t.entry if t.init_inputs else None


def render_target(t: TargetProgram, source_sha256: str, module_name: str,
                  relpath: str | None = None, shared: str | None = None) -> str:
    """One target's functions and its `_runtime.Target`.

    `shared` names an earlier target of the file with the same parameter and state
    trees: this one then reuses its `init` and shape trees instead of repeating them.
    """
    fn = t.function
    call_args = []
    if fn.takes_params:
        call_args.append("params")
    call_args += [f'state["{c}"]' for c in fn.state_collections]
    call_args += [n for n, _ in fn.inputs]
    if fn.takes_rng:
        call_args.append("rng=rng")
    results = "outputs"
    if fn.state_collections:
        results = ", ".join(["outputs"] + [f"new_{c}" for c in fn.state_collections])
    new_state = "{" + ", ".join(f'"{c}": new_{c}' for c in fn.state_collections) + "}"
    symbolic = dict(t.symbolic)
    # An input with symbolic dimensions is `(dims, dtype)`: the runtime makes its INPUTS
    # entry a jax.ShapeDtypeStruct of jax.export symbolic dimensions.
    inputs = ", ".join(
        f'"{n}": ({_dims_code(symbolic[n])}, {_dtype_code(d)})' if n in symbolic else
        f'"{n}": jax.ShapeDtypeStruct({_tuple(s)}, {_dtype_code(d)})' for n, s, d in t.inputs)
    train = ""
    train_kwargs = ""
    if t.train is not None:
        train = render_train(t, f"{t.entry}({', '.join(call_args)})", results, new_state)
        batch = ", ".join(f'"{n}": jax.ShapeDtypeStruct({_tuple(s)}, jnp.{d})'
                          for n, s, d in t.train.batch)
        train_kwargs = (f"    train_step=_{t.name}_train_step,\n    init_opt=_{t.name}_init_opt,\n"
                        f"    batch={{{batch}}},\n")
    if t.mesh:
        tree: dict[str, Any] = {}
        for path, spec in t.param_sharding:
            node = tree
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = "(" + ", ".join(
                "None" if a is None else f'"{a}"' for a in spec) + ("," if len(spec) == 1
                                                                  else "") + ")"
        mesh = "{" + ", ".join(f'"{n}": {k}' for n, k in t.mesh) + "}"
        sharding = "{\n" + "\n".join(_dict_lines(tree, 8)) + "\n    }" if tree else "{}"
        train_kwargs += f"    mesh={mesh},\n    param_sharding={sharding},\n"
    if t.tpu_topologies:  # names checked by hardware.parse_tpu_topology: [a-z0-9:x] only
        train_kwargs += f"    tpu_topologies={_str_tuple(t.tpu_topologies)},\n"
    if t.gpu_targets:  # names of hardware.GPU_TARGETS
        train_kwargs += f"    gpu_targets={_str_tuple(t.gpu_targets)},\n"
    train_kwargs += _serving_kwargs(t)
    state_for_init = tuple(ParamDecl(d.path, d.shape, d.dtype, d.init, d.span) for d in t.state)
    if shared is None:
        init_call = ""
        if t.init_inputs:
            args = ", ".join(["params", *(f'state["{c}"]' for c in fn.state_collections),
                              *(n for n, _ in fn.inputs), "rng=rng"])
            init_call = f"{fn.init_name}({args})"
        init_def = template("init.py.j2").render(
            name=t.name, params_init=_init_tree_code(t.params, 4),
            state_init=_tree_code(state_for_init, _init_leaf, 4),
            input_names="".join(f", {n}" for n, _, _ in t.inputs) if t.init_inputs else "",
            init_call=init_call).rstrip("\n") + "\n\n\n"
        init_name, param_shapes = f"_{t.name}_init", _tree_code(t.params, _sds, 4)
        state_shapes = _tree_code(t.state, _sds, 4)
    else:
        init_def, init_name = "", f"_{shared}_init"
        param_shapes, state_shapes = f"{shared}.PARAM_SHAPES", f"{shared}.STATE_SHAPES"
    return (train.rstrip("\n") + "\n\n\n" if train else "") + init_def + template(
        "target.py.j2").render(
        train_kwargs=train_kwargs, init_name=init_name,
        name=t.name, description=docstring_text(t.description), entry=t.entry,
        input_names=", ".join(n for n, _, _ in t.inputs),
        inputs_doc=", ".join(f"{n}: {describe_aval(s, d)}" for n, s, d in t.inputs),
        call=f"{t.entry}({', '.join(call_args)})", results=results, new_state=new_state,
        param_shapes=param_shapes, state_shapes=state_shapes,
        inputs="{" + inputs + "}", stochastic=repr(t.stochastic),
        platforms=_str_tuple(t.platforms), devices=t.devices, module=module_name,
        relpath=relpath or t.span.path,
        source_sha256=source_sha256,
        nparams=sum(size(d.shape) for d in t.params),
        outputs_doc=", ".join(describe_aval(s, d) for s, d in t.outputs),
        line=t.span.line, init_inputs=t.init_inputs,
    )


def _dims_code(dims: tuple[object, ...]) -> str:
    """`("batch", 28, 28, 1)`: a symbolic dimension is its name (an identifier, AOT410)."""
    return "(" + ", ".join(f'"{x}"' if isinstance(x, str) else str(x) for x in dims) + (
        "," if len(dims) == 1 else "") + ")"


def _serving_kwargs(t: TargetProgram) -> str:
    """`buckets=`, `pad_values=`, `masks=`, `splittable=` of a bucketed target.

    Names are identifiers (checked by resolve) and pad values numbers, so nothing
    of the model file reaches the code but as quoted data.
    """
    if not t.buckets:
        return ""
    buckets = ", ".join(f'"{d}": {_tuple(sizes)}' for d, sizes in t.buckets)
    out = f"    buckets={{{buckets}}},\n"
    if t.pad_values:
        out += "    pad_values={" + ", ".join(f'"{n}": {v!r}' for n, v in t.pad_values) + "},\n"
    if t.masks:
        out += "    masks={" + ", ".join(f'"{d}": {_str_tuple(ns)}' for d, ns in t.masks) + "},\n"
    return out + f"    splittable={_str_tuple(t.splittable)},\n"


def _dtype_code(dtype: str) -> str:
    """`jnp.float32`; a typed random key's dtype is the default implementation's."""
    return "jax.random.key(0).dtype" if dtype.startswith("key<") else f"jnp.{dtype}"


def _str_tuple(items: tuple[str, ...]) -> str:
    return "(" + ", ".join(f'"{i}"' for i in items) + ("," if len(items) == 1 else "") + ")"


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
    first: dict[tuple, str] = {}
    targets = []
    for t in program.targets:
        key = _trees_key(t)
        targets.append(render_target(t, program.source_sha256, module_name, program.relpath,
                                     shared=first.get(key)))
        first.setdefault(key, t.name)
    depth = module_name.count(".")
    body = "\n".join(functions + targets)
    user = [u.source.strip("\n") for u in program.user_functions]
    text = template("module.py.j2").render(
        relpath=program.relpath, version=__version__, source_sha256=program.source_sha256,
        runtime_import=f"from {'.' * (depth + 1)} import _runtime",
        uses_np=bool(_NP.search(body)) or any(_NP.search(u) for u in user),
        user_functions=user, functions=functions, targets=targets,
        target_names=[t.name for t in program.targets],
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
