"""The targets of a generated module: `_runtime.Target` objects and their glue.

Per target: a small `apply` wrapper calling its module's (shared) function, its
variables (one `_runtime.Variables` per distinct tree, shared between targets),
for an `aot.train_target` its loss, optimizer and step, and the `Target`
declaration with its inputs and what the runtime checks.
"""

from __future__ import annotations

from typing import Any

from .emit import docstring_text, template
from .program import FileProgram, TargetProgram
from .program import describe as describe_aval
from .shapes import size
from .sharing import Plan


def render_targets(program: FileProgram, plan: Plan, module_name: str) -> list[str]:
    """The text of every target, in declaration order, with the variable trees they use."""
    out: list[str] = []
    trees: dict[str, str] = {}
    applies: dict[str, list[TargetProgram]] = {}  # targets with the same apply share it
    for t in program.targets:
        applies.setdefault(_apply_body(t, plan), []).append(t)
    written: set[str] = set()
    for t in program.targets:
        variables, fresh = _variables(plan, t, trees)
        if fresh:
            out.append(fresh)
        body = _apply_body(t, plan)
        sharing = applies[body]
        apply_def = ""
        if body not in written:
            written.add(body)
            apply_def = _apply_def(sharing, body)
        out.append(render_target(t, plan, program.source_sha256, module_name,
                                 program.relpath, variables, f"_{sharing[0].name}_apply",
                                 apply_def))
    return out


def _results(t: TargetProgram) -> tuple[str, str]:
    fn = t.function
    results = "outputs"
    if fn.state_collections:
        results = ", ".join(["outputs"] + [f"new_{c}" for c in fn.state_collections])
    new_state = "{" + ", ".join(f'"{c}": new_{c}' for c in fn.state_collections) + "}"
    return results, new_state


def _apply_body(t: TargetProgram, plan: Plan) -> str:
    results, new_state = _results(t)
    args = ", ".join(["params", "state", *(n for n, _, _ in t.inputs), "rng=None"])
    return (f"({args})\n    {results} = {plan.call(t.function, _call_args(t))}\n"
            f"    return outputs, {new_state}")


def _apply_def(targets: list[TargetProgram], body: str) -> str:
    """`_name_apply(params, state, *inputs, rng=None) -> (outputs, new_state)`."""
    t = targets[0]
    if len(targets) == 1:
        doc = (f"{t.description} on "
               + ", ".join(f"{n}: {describe_aval(s, d)}" for n, s, d in t.inputs)
               + " -> " + ", ".join(describe_aval(s, d) for s, d in t.outputs) + ".")
    else:
        doc = (f"{t.description}: the apply of targets "
               + ", ".join(x.name for x in targets) + ".")
    args, rest = body.split("\n", 1)
    return (f"def _{t.name}_apply{args}:\n    \"\"\"{docstring_text(doc)}\"\"\"\n{rest}\n\n\n")


def _variables(plan: Plan, t: TargetProgram, trees: dict[str, str]) -> tuple[str, str]:
    """The name of the target's `_runtime.Variables`, and its definition if it is new."""
    fn = t.function
    call = plan.call(fn, [], "variables") if (id(fn), "variables") in plan.members else "{}"
    found = trees.get(call)
    if found is not None:
        return found, ""
    name = trees[call] = f"_{t.name}_variables"
    return name, f"#: Parameters and state of {t.name}.\n{name} = _runtime.Variables({call})"


def _call_args(t: TargetProgram) -> list[str]:
    fn = t.function
    args = []
    if fn.takes_params:
        args.append("params")
    args += [f'state["{c}"]' for c in fn.state_collections]
    args += [n for n, _ in fn.inputs]
    if fn.takes_rng:
        args.append("rng=rng")
    return args


def render_train(t: TargetProgram, plan: Plan, call: str, results: str,
                 new_state: str) -> str:
    """The loss, optimizer and train step of a training target."""
    train = t.train
    assert train is not None
    names = [n for n, _, _ in t.inputs] + [n for n, _, _ in train.batch]
    loss_args = ["outputs", *train.loss_inputs]
    labels = ""
    train_opt = train.optimizer
    if train.labels:
        var = f"_{t.name}_labels"
        labels = (f"#: Parameter groups of `{t.name}`, from its ModelParamTraversal filters.\n"
                  f"{var} = {_labels_code(train.labels)}\n\n\n")
        train_opt = train.optimizer.replace("_LABELS", var)
    return template("train.py.j2").jinja.render(
        name=t.name, arg_names=", ".join(names), description=t.description,
        loss_name=plan.name(train.loss), call=call, results=results, new_state=new_state,
        loss_target="loss, metrics" if train.has_metrics else "loss",
        metrics="metrics" if train.has_metrics else "{}",
        loss_call=plan.call(train.loss, loss_args), optimizer=train_opt, labels=labels)


def _labels_code(labels: tuple[tuple[tuple[str, ...], str], ...]) -> str:
    """The group of every parameter, as the runtime builds it from paths by group."""
    groups: dict[str, list[str]] = {}
    for path, label in labels:
        groups.setdefault(label, []).append("/".join(path))
    lines = ["_runtime.labels({"]
    for label, paths in groups.items():
        lines.append(f'    "{label}": (')
        lines += [f'        "{p}",' for p in paths]
        lines.append("    ),")
    lines.append("})")
    return "\n".join(lines)


def render_target(t: TargetProgram, plan: Plan, source_sha256: str, module_name: str,
                  relpath: str, variables: str, apply_name: str, apply_def: str) -> str:
    """One target: its apply wrapper (if it is the first with it), train step, init and
    `_runtime.Target`."""
    fn = t.function
    call = plan.call(fn, _call_args(t))
    results, new_state = _results(t)
    symbolic = dict(t.symbolic)
    # Symbolic dimensions are 1 in INPUTS; `symbolic=` names them (see runtime Target).
    inputs = ", ".join(
        f'"{n}": jax.ShapeDtypeStruct('
        f'{_tuple(tuple(1 if isinstance(x, str) else x for x in symbolic.get(n, s)))}, '
        f'{_dtype_code(d)})' for n, s, d in t.inputs)
    symbolic_code = "{" + ", ".join(
        f'"{n}": (' + ", ".join(f'"{x}"' if isinstance(x, str) else str(x) for x in dims)
        + ("," if len(dims) == 1 else "") + ")" for n, dims in t.symbolic) + "}"
    train = ""
    extra = ""
    if t.train is not None:
        train = render_train(t, plan, call, results, new_state)
        batch = ", ".join(f'"{n}": jax.ShapeDtypeStruct({_tuple(s)}, jnp.{d})'
                          for n, s, d in t.train.batch)
        extra = (f"    train_step=_{t.name}_train_step,\n    init_opt=_{t.name}_init_opt,\n"
                 f"    batch={{{batch}}},\n")
    if t.mesh:
        extra += _mesh_kwargs(t)
    if t.tpu_topologies:  # names checked by hardware.parse_tpu_topology: [a-z0-9:x] only
        extra += f"    tpu_topologies={_str_tuple(t.tpu_topologies)},\n"
    if t.gpu_targets:  # names of hardware.GPU_TARGETS
        extra += f"    gpu_targets={_str_tuple(t.gpu_targets)},\n"
    # the runtime's defaults are left out: stochastic=False, platforms=("cpu",), devices=1
    options = ""
    if t.stochastic:
        options += "    stochastic=True,\n"
    if t.platforms != ("cpu",):
        options += f"    platforms={_str_tuple(t.platforms)},\n"
    if t.devices != 1:
        options += f"    devices={t.devices},\n"
    if t.symbolic:
        options += f"    symbolic={symbolic_code},\n"
    init_def, init_name = "", f"{variables}.init"
    if t.init_inputs:
        args = ["params", *(f'state["{c}"]' for c in fn.state_collections),
                *(n for n, _ in fn.inputs), "rng=rng"]
        init_def = template("init.py.j2").jinja.render(
            name=t.name, variables=variables,
            input_names="".join(f", {n}" for n, _, _ in t.inputs),
            init_call=plan.call(fn, args, "init")).rstrip("\n") + "\n\n\n"
        init_name = f"_{t.name}_init"
    return (train.rstrip("\n") + "\n\n\n" if train else "") + init_def + apply_def + template(
        "target.py.j2").jinja.render(
        extra=extra, init_name=init_name, variables=variables, apply_name=apply_name,
        name=t.name, inputs="{" + inputs + "}", options=options, module=module_name,
        relpath=relpath or t.span.path, source_sha256=source_sha256,
        nparams=sum(size(d.shape) for d in t.params), line=t.span.line,
        init_inputs=t.init_inputs,
    )


def _mesh_kwargs(t: TargetProgram) -> str:
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
    return f"    mesh={mesh},\n    param_sharding={sharding},\n"


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


def _tuple(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _dtype_code(dtype: str) -> str:
    """`jnp.float32`; a typed random key's dtype is the default implementation's."""
    return "jax.random.key(0).dtype" if dtype.startswith("key<") else f"jnp.{dtype}"


def _str_tuple(items: tuple[str, ...]) -> str:
    return "(" + ", ".join(f'"{i}"' for i in items) + ("," if len(items) == 1 else "") + ")"
