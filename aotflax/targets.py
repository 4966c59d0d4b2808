"""The targets of a generated module: `_runtime.Target` objects and their glue.

Per target: a small `apply` wrapper calling its module's (shared) function, its
variables (one `_runtime.Variables` per distinct tree, shared between targets),
for an `aot.train_target` its loss, optimizer and step, and the `Target`
declaration with its inputs and what the runtime checks.

Every name and literal goes through `quoting` (target, input and collection names
come from the model file); inputs are renamed where they would shadow a name of
the module or of the templates (`params`, `loss`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import target_names
from .emit import checked, free_name, template
from .program import FileProgram, TargetProgram
from .program import describe as describe_aval
from .quoting import comment, docstring, literal, string
from .shapes import size
from .sharing import Plan, summary
from .variables import dtype_code


@dataclass(frozen=True)
class Locals:
    """The names one target's generated functions use for its values."""

    #: Input and batch name (as declared) -> its local name.
    inputs: dict[str, str]
    #: State collection -> the local holding its new value.
    new: dict[str, str]
    #: The checked state collection names, in order.
    collections: tuple[str, ...]


def render_targets(program: FileProgram, plan: Plan, module_name: str) -> list[str]:
    """The text of every target, in declaration order, with the variable trees they use."""
    module_names = set(plan.module_names())
    out: list[str] = []
    trees: dict[str, str] = {}
    local = {t.name: _locals(t, module_names) for t in program.targets}
    applies: dict[str, list[TargetProgram]] = {}  # targets with the same apply share it
    for t in program.targets:
        applies.setdefault(_apply_body(t, plan, local[t.name]), []).append(t)
    written: set[str] = set()
    by_name = {t.name: t for t in program.targets}
    for t in program.targets:
        # a method target over its module's whole tree walks its sibling's variables
        tree_of = by_name.get(t.variables_of or "", t)
        variables, fresh = _variables(plan, tree_of, trees)
        if fresh:
            out.append(fresh)
        body = _apply_body(t, plan, local[t.name])
        sharing = applies[body]
        apply_def = ""
        if body not in written:
            written.add(body)
            apply_def = _apply_def(sharing, body)
        apply_name = f"_{checked(sharing[0].name, 'target name')}_apply"
        out.append(render_target(t, plan, program.source_sha256, module_name,
                                 program.relpath, variables, apply_name, apply_def,
                                 local[t.name]))
    return out


def _locals(t: TargetProgram, module_names: set[str]) -> Locals:
    """Local names for a target's inputs and new state: the templates' own locals and
    the module's names stay untouched (an input named `params`, `loss` or like a module
    function gets another local name)."""
    micro = t.train is not None and t.train.microbatches > 1
    taken = set(module_names) | (target_names.TEMPLATE_LOCALS if micro
                                 else target_names.TARGET_LOCALS)
    collections = tuple(checked(c, "state collection name")
                        for c in t.function.state_collections)
    new = {c: free_name(f"new_{c}", taken) for c in collections}
    batch = t.train.batch_names if t.train is not None else ()
    inputs = {n: free_name(n, taken) for n in (*t.arguments, *batch)}
    return Locals(inputs, new, collections)


def _results(local: Locals) -> tuple[str, str]:
    results = ", ".join(["outputs"] + [local.new[c] for c in local.collections])
    new_state = "{" + ", ".join(f"{string(c)}: {local.new[c]}" for c in local.collections) + "}"
    return results, new_state


def _apply_body(t: TargetProgram, plan: Plan, local: Locals) -> str:
    results, new_state = _results(local)
    args = ", ".join(["params", "state", *(local.inputs[n] for n in t.arguments),
                      "rng=None"])
    return (f"({args})\n    {results} = {plan.call(t.function, _call_args(t, local))}\n"
            f"    return outputs, {new_state}")


def _apply_def(targets: list[TargetProgram], body: str) -> str:
    """`_name_apply(params, state, *inputs, rng=None) -> (outputs, new_state)`."""
    t = targets[0]
    if len(targets) == 1:
        tail = (" on " + ", ".join(f"{n}: {describe_aval(s, d)}" for n, s, d in t.inputs)
                + " -> " + ", ".join(describe_aval(s, d) for s, d in t.outputs) + ".")
    else:
        tail = ": the apply of targets " + ", ".join(x.name for x in targets) + "."
    doc = summary(t.description + tail, _origin(t) + tail)
    args, rest = body.split("\n", 1)
    name = checked(t.name, "target name")
    return f'def _{name}_apply{args}:\n    """{docstring(doc)}"""\n{rest}\n\n\n'


def _origin(t: TargetProgram) -> str:
    """`ResNet.apply`: the target's module and method without its hyperparameters (the
    summary line that has no room for them; the function it calls lists them)."""
    return t.description.split("(", 1)[0]


def _variables(plan: Plan, t: TargetProgram, trees: dict[str, str]) -> tuple[str, str]:
    """The name of the target's `_runtime.Variables`, and its definition if it is new."""
    fn = t.function
    call = plan.call(fn, [], "variables") if (id(fn), "variables") in plan.members else "{}"
    found = trees.get(call)
    if found is not None:
        return found, ""
    name = trees[call] = target_names.variables_variable(checked(t.name, "target name"))
    return name, f"#: Parameters and state of {t.name}.\n{name} = _runtime.Variables({call})"


def _call_args(t: TargetProgram, local: Locals) -> list[str]:
    fn = t.function
    args = []
    if fn.takes_params:
        args.append("params")
    args += [f"state[{string(c)}]" for c in local.collections]
    args += [local.inputs[n] for n, _ in fn.inputs]
    if fn.takes_rng:
        args.append("rng=rng")
    return args


def render_train(t: TargetProgram, plan: Plan, local: Locals, call: str, results: str,
                 new_state: str) -> str:
    """The loss, optimizer and train step of a training target."""
    train = t.train
    assert train is not None
    names = [local.inputs[n] for n in (*t.arguments, *train.batch_names)]
    loss_args = ["outputs", *(local.inputs[n] for n in train.loss_inputs)]
    labels = ""
    if train.labels:
        var = target_names.labels_variable(t.name)
        labels = (f"#: Parameter groups of `{t.name}`, from its ModelParamTraversal filters.\n"
                  f"{var} = {_labels_code(train.labels)}\n\n\n")
    hook = train.after_update
    after_update = (f"\n    params = {plan.name(hook)}(params)  # after_update="
                    if hook is not None else "")
    step = template("train_step.py.j2" if train.microbatches == 1
                    else "train_step_microbatches.py.j2").jinja.render(
        name=t.name, arg_names=", ".join(names), after_update=after_update,
        n=train.microbatches)
    loss_name = plan.name(train.loss)
    return template("train.py.j2").jinja.render(
        name=t.name, arg_names=", ".join(names),
        loss_doc=docstring(summary(f"Loss of target `{t.name}`: {loss_name} of {t.description}.",
                                   f"Loss of target `{t.name}`: {loss_name} of {_origin(t)}.")),
        call=call, results=results, new_state=new_state,
        loss_target="loss, metrics" if train.has_metrics else "loss",
        metrics="metrics" if train.has_metrics else "{}",
        loss_call=plan.call(train.loss, loss_args), optimizer=train.optimizer, labels=labels,
        step=step)


def _labels_code(labels: tuple[tuple[tuple[str, ...], str], ...]) -> str:
    """The group of every parameter, as the runtime builds it from paths by group."""
    groups: dict[str, list[tuple[str, ...]]] = {}
    for path, label in labels:
        groups.setdefault(label, []).append(tuple(path))
    lines = ["_runtime.labels({"]
    for label, paths in groups.items():
        lines.append(f"    {string(label)}: (")
        lines += [f"        {literal(p)}," for p in paths]
        lines.append("    ),")
    lines.append("})")
    return "\n".join(lines)


def render_target(t: TargetProgram, plan: Plan, source_sha256: str, module_name: str,
                  relpath: str, variables: str, apply_name: str, apply_def: str,
                  local: Locals) -> str:
    """One target: its apply wrapper (if it is the first with it), train step, init and
    `_runtime.Target`."""
    name = checked(t.name, "target name")
    fn = t.function
    call = plan.call(fn, _call_args(t, local))
    results, new_state = _results(local)
    inputs = _inputs_code(t.arguments, t.inputs, dict(t.symbolic), dict(t.trees))
    train = ""
    extra = ""
    if t.train is not None:
        step_fn = t.train.entry  # with microbatches: the model resolved for one slice
        step_call = call if step_fn is None else plan.call(step_fn, _call_args(t, local))
        train = render_train(t, plan, local, step_call, results, new_state)
        batch = _inputs_code(t.train.batch_names, t.train.batch, {}, dict(t.train.trees))
        extra = (f"    train_step=_{name}_train_step,\n    init_opt=_{name}_init_opt,\n"
                 f"    batch={batch},\n")
    if t.mesh:
        extra += _mesh_kwargs(t)
    if t.processes > 1:
        extra += f"    processes={literal(int(t.processes))},\n"
    if t.tpu_topologies:  # names checked by hardware.parse_tpu_topology: [a-z0-9:x] only
        extra += f"    tpu_topologies={literal(tuple(t.tpu_topologies))},\n"
    if t.gpu_targets:  # names of hardware.GPU_TARGETS
        extra += f"    gpu_targets={literal(tuple(t.gpu_targets))},\n"
    extra += _serving_kwargs(t)
    # the runtime's defaults are left out: stochastic=False, platforms=("cpu",), devices=1
    options = ""
    if t.stochastic:
        options += "    stochastic=True,\n"
    if tuple(t.platforms) != ("cpu",):
        options += f"    platforms={literal(tuple(t.platforms))},\n"
    if t.devices != 1:
        options += f"    devices={literal(int(t.devices))},\n"
    init_def, init_name = "", f"{variables}.init"
    if t.init_inputs:
        args = ["params", *(f"state[{string(c)}]" for c in local.collections),
                *(local.inputs[n] for n, _ in fn.inputs), "rng=rng"]
        init_def = template("init.py.j2").jinja.render(
            name=name, variables=variables,
            input_names="".join(f", {local.inputs[n]}" for n in t.arguments),
            init_call=plan.call(fn, args, "init")).rstrip("\n") + "\n\n\n"
        init_name = f"_{name}_init"
    return (train.rstrip("\n") + "\n\n\n" if train else "") + init_def + apply_def + template(
        "target.py.j2").jinja.render(
        extra=extra, init_name=init_name, variables=variables, apply_name=apply_name,
        name=name, name_literal=string(t.name), inputs=inputs, options=options,
        module=string(module_name), source_sha256=string(source_sha256),
        where=comment(f"{relpath or t.span.path}:{t.span.line}"),
        nparams=sum(size(d.shape) for d in t.params), init_inputs=t.init_inputs,
    )


def _inputs_code(names: tuple[str, ...], leaves: tuple[tuple[str, tuple[int, ...], str], ...],
                 symbolic: dict[str, tuple[int | str, ...]], trees: dict[str, Any]) -> str:
    """`{"x": jax.ShapeDtypeStruct(...), "batch": {"tokens": ...}}`: each input's spec, or
    its tree of specs (keys quoted as data).  An array with symbolic dimensions is
    `(dims, dtype)` at the top level and `_runtime.Dims(dims, dtype)` in a tree: the runtime
    makes it a jax.ShapeDtypeStruct of jax.export symbolic dimensions."""
    specs = {label: (shape, dtype) for label, shape, dtype in leaves}

    def spec(label: str, nested: bool) -> str:
        shape, dtype = specs[label]
        if label in symbolic:
            dims = f"{_dims(symbolic[label])}, {dtype_code(dtype)}"
            return f"_runtime.Dims({dims})" if nested else f"({dims})"
        return f"jax.ShapeDtypeStruct({_tuple(shape)}, {dtype_code(dtype)})"

    def tree(node: Any) -> str:
        if isinstance(node, str):
            return spec(node, True)
        if isinstance(node, dict):
            return "{" + ", ".join(f"{string(k)}: {tree(v)}" for k, v in node.items()) + "}"
        items = [tree(v) for v in node]
        if isinstance(node, tuple):
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        return "[" + ", ".join(items) + "]"

    return "{" + ", ".join(f"{string(n)}: {tree(trees[n]) if n in trees else spec(n, False)}"
                           for n in names) + "}"


def _dims(dims: tuple[int | str, ...]) -> str:
    """`("batch", 28, 28, 1)`: a symbolic dimension is its name, quoted as data."""
    return literal(tuple(x if isinstance(x, str) else int(x) for x in dims))


def _serving_kwargs(t: TargetProgram) -> str:
    """`buckets=`, `pad_values=`, `masks=`, `splittable=` of a bucketed target.

    Names are identifiers (checked by resolve) and pad values numbers; everything goes
    through `quoting`, so nothing of the model file reaches the code but as quoted data.
    """
    if not t.buckets:
        return ""
    buckets = {str(d): tuple(int(n) for n in sizes) for d, sizes in t.buckets}
    out = f"    buckets={literal(buckets)},\n"
    if t.pad_values:
        out += f"    pad_values={literal(dict(t.pad_values))},\n"
    if t.masks:
        out += f"    masks={literal({d: tuple(ns) for d, ns in t.masks})},\n"
    return out + f"    splittable={literal(tuple(t.splittable))},\n"


def _mesh_kwargs(t: TargetProgram) -> str:
    tree: dict[str, Any] = {}
    for path, spec in t.param_sharding:
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = literal(tuple(spec))
    mesh = "{" + ", ".join(f"{string(n)}: {literal(k)}" for n, k in t.mesh) + "}"
    sharding = "{\n" + "\n".join(_dict_lines(tree, 8)) + "\n    }" if tree else "{}"
    return f"    mesh={mesh},\n    param_sharding={sharding},\n"


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


def _tuple(shape: tuple[int, ...]) -> str:
    return literal(tuple(int(d) for d in shape))

