"""Training targets: `aot.train_target(name, Module, loss=fn, optimizer=..., **inputs)`.

The loss is a function of the model file, `loss(model_output, *batch)`,
returning a scalar or `(scalar, {"metric": array})`; it is resolved like a
module (into its own emitted function).  The optimizer is optax, named in the
model file (`optax.adam(1e-3)`), or the old flax `MultiOptimizer` over
`ModelParamTraversal` filters, which are evaluated here, at build time, on
every parameter path to give `optax.multi_transform` its static labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import dtypes as dt
from .. import quoting
from ..diagnostics import Note, Span
from ..ops.calls import value_code
from ..program import Code, Function, Op, ParamDecl, Tensor, TrainProgram, TreeVar, fresh_like
from ..scopes import FunctionState
from ..target_names import labels_variable
from ..values import (
    Closure,
    Env,
    MultiOptimizer,
    OptaxFn,
    OptaxValue,
    Spec,
    StaticError,
    Traversal,
    contains_poison,
    describe_value,
    is_static,
    static_key,
    to_code,
)
from .base import Abort, Frame, ReturnSignal
from .helpers import tensors, unpack_code

if TYPE_CHECKING:
    from .core import Resolver


def call_optax(r: "Resolver", fn: OptaxFn, args: list, kwargs: dict, span: Span) -> OptaxValue:
    """`optax.name(...)` as code; arguments must be static or other optax values."""
    parts = []
    for value in [*args, *kwargs.values()]:
        if not (is_static(value) or isinstance(value, OptaxValue)):
            raise r.error("AOT420", f"optax.{fn.name} arguments must be static, got "
                          f"{describe_value(value)}", span)
    try:
        parts = [to_code(a) for a in args] + [
            f"{quoting.identifier(k, 'keyword argument name')}={to_code(v)}"
            for k, v in kwargs.items()]
    except (StaticError, quoting.QuotingError) as e:  # a value with no code form, a bad name
        raise r.error("AOT420", f"optax.{fn.name}: {e}", span) from None
    # optax binds its own arguments when verify builds the optimizer (resolve never
    # imports optax or jax)
    return OptaxValue(f"optax.{fn.name}({', '.join(parts)})")


def traversal(r: "Resolver", args: list, kwargs: dict, span: Span) -> Traversal:
    if len(args) != 1 or kwargs or not isinstance(args[0], Closure):
        raise r.error("AOT421", "aot.ModelParamTraversal takes one function "
                      "filter_fn(path, param) -> bool", span)
    return Traversal(args[0], span)


def _selects(r: "Resolver", trav: Traversal, path: tuple[str, ...], shape: tuple[int, ...],
             dtype: str) -> bool:
    """Whether a traversal's filter selects the parameter at `path` (evaluated statically)."""

    where = "/" + "/".join(path)
    hit = r._call_closure(trav.filter, [where, Tensor(shape, dtype)], {}, trav.span,
                          Frame(Env(r.globals), None, None))
    if not isinstance(hit, bool):
        raise r.error("AOT421", f"a ModelParamTraversal filter must return a static "
                      f"bool, got {describe_value(hit)} for {where}", trav.span)
    return hit


def traversal_method(r: "Resolver", trav: Traversal, name: str, args: list, kwargs: dict,
                     expr: Any, frame: Any) -> Any:
    """`traversal.update(fn, params)` and `traversal.iterate(params)`, as in old flax.

    `update` returns the tree with `fn` applied to every selected parameter (emitted
    code); `iterate` lists the selected parameters.  Selection is decided here, by
    path, so the generated code holds only the arrays' updates.
    """
    span = expr.span
    if name not in ("update", "iterate"):
        raise r.error("AOT421", f"a ModelParamTraversal has the methods update(fn, params) and "
                      f"iterate(params), not '{name}'", span)
    want = 2 if name == "update" else 1
    if len(args) != want or kwargs:
        usage = "update(fn, params)" if name == "update" else "iterate(params)"
        raise r.error("AOT421", f"ModelParamTraversal.{usage} takes {want} positional "
                      f"argument{'s' if want > 1 else ''}", span)
    tree = args[-1]
    leaves = _param_leaves(r, tree, (), span)
    if name == "iterate":
        return [t for path, t in leaves if _selects(r, trav, path, t.shape, t.dtype)]
    fn = args[0]
    out: dict[str, Any] = {}
    for path, leaf in leaves:
        new = leaf
        if _selects(r, trav, path, leaf.shape, leaf.dtype):
            new = r._call(fn, [leaf], {}, expr, frame)
            if not (isinstance(new, Tensor) and new.shape == leaf.shape
                    and new.dtype == leaf.dtype):
                raise r.error("AOT421", f"ModelParamTraversal.update: the function must return "
                              f"an array like the parameter, {leaf.describe()} for "
                              f"/{'/'.join(path)}, got {describe_value(new)}", span)
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = new
    return out


def _param_leaves(r: "Resolver", tree: Any, prefix: tuple[str, ...],
                  span: Span) -> list[tuple[tuple[str, ...], Tensor]]:
    """(path, array) of a parameter tree: nested dicts of arrays, in order."""
    if isinstance(tree, Tensor):
        return [(prefix, tree)]
    if not isinstance(tree, dict) or not tree:
        raise r.error("AOT421", f"a ModelParamTraversal walks a parameter tree (nested dicts "
                      f"of arrays), got {describe_value(tree)}", span)
    return [leaf for key, value in tree.items()
            for leaf in _param_leaves(r, value, (*prefix, str(key)), span)]


def multi_optimizer(r: "Resolver", args: list, kwargs: dict, span: Span) -> MultiOptimizer:
    groups = []
    for a in args:
        if not (isinstance(a, tuple) and len(a) == 2 and isinstance(a[0], Traversal)
                and isinstance(a[1], OptaxValue)):
            raise r.error("AOT421", "aot.MultiOptimizer takes (traversal, optimizer) pairs, e.g. "
                          "(aot.ModelParamTraversal(lambda path, p: 'bias' in path), "
                          "optax.sgd(0.1))", span)
        groups.append(a)
    if not groups or kwargs:
        raise r.error("AOT421", "aot.MultiOptimizer needs at least one (traversal, optimizer) "
                      "pair", span)
    return MultiOptimizer(tuple(groups), span)


def optimizer_code(r: "Resolver", optimizer: Any, params: tuple[ParamDecl, ...],
                   span: Span, target: str) -> tuple[str, tuple[tuple[tuple[str, ...], str], ...]]:
    """The optax code, and for parameter groups the static label of every parameter."""
    if isinstance(optimizer, OptaxValue):
        return optimizer.code, ()
    if not isinstance(optimizer, MultiOptimizer):
        raise r.error("AOT422", f"optimizer= must be an optax optimizer or aot.MultiOptimizer, "
                      f"got {describe_value(optimizer)}", span)
    labels: list[tuple[tuple[str, ...], str]] = []
    for decl in params:
        label = next((f"group_{i}" for i, (trav, _) in enumerate(optimizer.groups)
                      if _selects(r, trav, decl.path, decl.shape, decl.dtype)), "frozen")
        labels.append((decl.path, label))
    transforms = [f'"group_{i}": {opt.code}' for i, (_, opt) in enumerate(optimizer.groups)]
    transforms.append('"frozen": optax.set_to_zero()')
    return ("optax.multi_transform({" + ", ".join(transforms) + "}, "
            f"{labels_variable(target)})", tuple(labels))


#: Keywords only `aot.train_target` takes, with their error codes.
TRAIN_ONLY = {"after_update": "AOT426", "microbatches": "AOT427"}


def train_options(r: "Resolver", call: Any, kwargs: dict,
                  train: bool) -> tuple[Closure | None, int]:
    """Pops `after_update=` and `microbatches=` from a target declaration's keywords.

    **Returns:** `(after_update hook or None, microbatches)`.
    """
    def span_of(name: str) -> Span:
        return next((kw.span for kw in call.keywords if kw.name == name), call.span)

    for name, code in TRAIN_ONLY.items():
        if name in kwargs and not train:
            raise r.error(code, f"{name}= belongs to aot.train_target (a training step); "
                          "aot.target declares a forward pass", span_of(name))
    hook = kwargs.pop("after_update", None)
    microbatches = kwargs.pop("microbatches", 1)
    if hook is not None and not (isinstance(hook, Closure) and hook.toplevel):
        raise r.error("AOT426", "after_update= must be a function of the model file, "
                      f"after_update(params) -> params, got {describe_value(hook)}",
                      span_of("after_update"))
    if isinstance(microbatches, bool) or not isinstance(microbatches, int) or microbatches < 1:
        raise r.error("AOT427", f"microbatches= must be a positive int, got "
                      f"{describe_value(microbatches)}", span_of("microbatches"))
    return hook, microbatches


def _check_differentiable(r: "Resolver", fn: Function, span: Span) -> None:
    """A model with a `jax.lax.while_loop` has no gradient (jax differentiates a loop in
    reverse only when its trip count is static: a scan)."""
    seen: set[int] = set()

    def walk(f: Function) -> Span | None:
        if id(f) in seen:
            return None
        seen.add(id(f))
        for op in f.body:
            if op.info is not None and op.info.entry in ("jax.lax.while_loop",
                                                         "jax.lax.fori_loop"):
                return op.span
            for inner in (*op.nested, *((op.info.callee,) if op.info and op.info.callee
                                        else ())):
                found = walk(inner)
                if found is not None:
                    return found
        return None

    found = walk(fn)
    if found is not None:
        raise r.error("AOT361", "a training target's model has no gradient through "
                      "jax.lax.while_loop or a fori_loop with array bounds (jax "
                      "differentiates loops with a static trip count only)", found,
                      notes=(Note("the training target", span),),
                      hint="loop a static number of times with jax.lax.fori_loop(0, n, ...) "
                           "or jax.lax.scan")


def resolve_train(r: "Resolver", decl: Any, entry: Any, inputs: dict[str, Any], span: Span,
                  params: tuple[ParamDecl, ...]) -> TrainProgram:
    """The loss function, optimizer, after-update hook and microbatches of a training target.

    **Arguments:** `entry`: the model's specialization for the target's inputs
    (`inputs`, name -> array); with `microbatches=N` the step calls the model on
    slices of the batch, resolved here at those shapes.
    """
    loss: Closure = decl.loss
    names = [p.name for p in loss.params.params]
    if not names:
        raise r.error("AOT423", "a loss function takes the model output first: "
                      "loss(logits, labels)", loss.span)
    batch = [(n, decl.batch[n]) for n in names[1:] if n in decl.batch]
    # a loss input named like a model input (tokens for a language model) is that input
    given = {**decl.specs, **decl.batch}
    loss_inputs = [(n, given[n]) for n in names[1:] if n in given]
    missing = [n for n in names[1:] if n not in given and n not in loss.defaults]
    if missing:
        raise r.error("AOT424", f"loss '{loss.name}' needs input '{missing[0]}': declare it "
                      f"in the train target, e.g. {missing[0]}=aot.i32[...]", span)
    _check_microbatches(r, decl, span)
    _check_differentiable(r, entry.function, span)
    n = decl.microbatches
    step_entry = _microbatch_entry(r, decl, entry, inputs, params, span) if n > 1 else None
    outputs = _fresh_copy((step_entry or entry).result)
    leaves: list[tuple[str, tuple[int, ...], str]] = []
    trees: list[tuple[str, Any]] = []
    loss_tensors = [Tensor(_slice(tuple(r._dim_value(d, s.span) for d in s.shape), n), s.dtype)
                    if isinstance(s, Spec) else r._input_value(name, s, [], [], [])
                    for name, s in loss_inputs]
    for name, s in batch:  # (microbatches take array inputs only: `_check_tree_inputs`)
        r._input_value(name, s, [], leaves, trees)
    key = ("loss", id(loss), tuple((t.shape, t.dtype) for t in _leaves(outputs)),
           tuple(static_key(t) for t in loss_tensors))
    if key not in r.loss_cache:
        fn, has_metrics = _loss_function(r, loss, [outputs, *loss_tensors],
                                         [n for n, _ in loss_inputs], span)
        r.functions.append(fn)
        r.loss_cache[key] = (fn, has_metrics)
    fn, has_metrics = r.loss_cache[key]
    code, labels = optimizer_code(r, decl.optimizer, params, span, decl.name)
    hook = None
    if decl.after_update is not None:
        hook = _after_update_function(r, decl.after_update, params, span)
        r.functions.append(hook)
    return TrainProgram(fn, tuple(leaves), code,
                        has_metrics, labels, tuple(n for n, _ in loss_inputs),
                        batch_names=tuple(n for n, _ in batch), trees=tuple(trees),
                        after_update=hook, microbatches=n,
                        entry=step_entry.function if step_entry is not None else None)


def _slice(shape: tuple[int, ...], n: int) -> tuple[int, ...]:
    """The shape of one of `n` microbatches of an input."""
    return shape if n == 1 else (shape[0] // n, *shape[1:])


def _microbatch_entry(r: "Resolver", decl: Any, entry: Any, inputs: dict[str, Any],
                      params: tuple[ParamDecl, ...], span: Span) -> Any:
    """The model resolved for one microbatch: every input's first axis divided by N.

    Shapes are static in generated code, so the step's slices need their own
    specialization; its parameters and state must be the target's.
    """
    n = decl.microbatches
    sliced = {k: Tensor(_slice(v.shape, n), v.dtype) if isinstance(v, Tensor) else v
              for k, v in inputs.items()}
    spec = r._specialize(decl.module, decl.method, [], sliced, span, entry=True)

    def tree(decls: Any) -> list[tuple[Any, ...]]:
        return [(d.path, d.shape, d.dtype) for d in decls]

    if tree(spec.params.values()) != tree(params) or tree(spec.state.values()) != tree(
            entry.state.values()):
        raise r.error("AOT427", f"microbatches={n}: the model's parameters or state depend "
                      "on the batch size, so the slices cannot share them", span)
    return spec


def _check_microbatches(r: "Resolver", decl: Any, span: Span) -> None:
    """Every input of the step is split along its first axis into `microbatches` slices."""
    n = decl.microbatches
    if n == 1:
        return
    for name, spec in {**decl.specs, **decl.batch}.items():
        first = spec.shape[0] if spec.shape else None
        if not isinstance(first, int) or first % n:
            got = "a scalar" if first is None else f"first dimension {first!r}"
            raise r.error("AOT427", f"microbatches={n} splits every input along its first "
                          f"axis, and input '{name}' has {got}", spec.span,
                          notes=(Note("microbatches declared by this train target", span),))


def _after_update_function(r: "Resolver", hook: Closure, params: tuple[ParamDecl, ...],
                           span: Span) -> Function:
    """`after_update(params) -> params` as an emitted function of the parameter tree.

    The hook is interpreted like any function of the model file, with the parameters
    bound to arrays read from its one argument; it must return a tree of the same
    paths, shapes and dtypes (the train step's parameters).
    """

    fn = FunctionState(r)
    var = TreeVar("parameters")
    tree: dict[str, Any] = {}
    for decl in params:
        leaf = Tensor(decl.shape, decl.dtype)
        fn.hint(leaf, decl.path[-1])
        keys = "".join(f"[{quoting.string(part)}]" for part in decl.path)  # data, quoted
        fn.emit("ops/call.j2", {"call": Code.of(var, keys)}, (leaf,),
                hook.span, decl.path[-1])
        node = tree
        for part in decl.path[:-1]:
            node = node.setdefault(part, {})
        node[decl.path[-1]] = leaf
    result = r._call_closure(hook, [tree], {}, span, Frame(Env(r.globals), fn, None))
    where = hook.definition.name_span if hook.definition else hook.span
    problem = _tree_mismatch(result, params)
    if problem:
        raise r.error("AOT426", f"after_update '{hook.name}' must return the parameter tree "
                      f"with the same paths, shapes and dtypes: {problem}", where,
                      notes=(Note("used by this train target", span),))
    first = hook.params.params[0].name
    return Function(
        name=r._function_name(hook.name), doc=f"After-update hook `{hook.name}`: the "
        "parameters after each optimizer step", takes_params=False, state_collections=(),
        takes_rng=False, inputs=((first, var),), body=tuple(fn.ops), result=value_code(result),
        result_tensors=tuple(_tree_tensors(result)), span=hook.span, hints=dict(fn.hints))


def _tree_tensors(value: Any) -> list[Tensor]:
    """The arrays of a nested dict/tuple/list value, in order."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _tree_tensors(v)]
    return []


def _dict_leaf_count(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_dict_leaf_count(v) for v in value.values())
    return 1


def _tree_mismatch(result: Any, params: tuple[ParamDecl, ...]) -> str | None:
    """How a hook's result differs from the parameter tree, or None."""
    for decl in params:
        node = result
        for part in decl.path:
            if not isinstance(node, dict) or part not in node:
                return f"/{'/'.join(decl.path)} is missing (got {describe_value(result)})"
            node = node[part]
        if not (isinstance(node, Tensor) and node.shape == decl.shape
                and node.dtype == decl.dtype):
            want = Tensor(decl.shape, decl.dtype).describe()
            return f"/{'/'.join(decl.path)} should be {want}, got {describe_value(node)}"
    if _dict_leaf_count(result) != len(params):
        return "it has entries that are not parameters"
    return None


def _leaves(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _leaves(v)]
    return []


def _fresh_copy(value: Any) -> Any:
    if isinstance(value, Tensor):
        return fresh_like(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_fresh_copy(v) for v in value)
    return value


def _loss_function(r: "Resolver", loss: Closure, args: list, batch_names: list[str],
                   span: Span) -> tuple[Function, bool]:
    fn = FunctionState(r)
    env = Env(loss.env)
    first = loss.params.params[0].name
    inputs: list[tuple[str, Any]] = []
    prologue: list[Op] = []
    output = args[0]
    if isinstance(output, Tensor):
        fn.hint(output, first)
        inputs.append((first, output))
    else:  # a tuple of outputs: one parameter, unpacked on the first line
        var = TreeVar("model output")
        inputs.append((first, var))
        leaves = tensors(output)
        prologue.append(Op("ops/module_call.j2", (("target", unpack_code(output, output, [])),
                                                  ("call", Code((var,)))),
                           tuple(leaves), (), loss.span, first))
    env.set(first, output)
    for name, t in zip(batch_names, args[1:]):
        if not isinstance(t, Tensor):  # a tree of arrays (a batch dict): read on entry
            t = r._receive_tree(name, t, fn, inputs, loss.span, loss.span, f"loss '{loss.name}'")
        else:
            fn.hint(t, name)
            inputs.append((name, t))
        env.set(name, t)
    for p in loss.params.params[1:]:
        if p.name not in batch_names:
            env.set(p.name, loss.defaults[p.name])
    result: Any = None
    try:
        r._exec_block(loss.body, Frame(env, fn, None))
    except ReturnSignal as ret:
        result = ret.value
    scalar, metrics = (result if isinstance(result, tuple) and len(result) == 2
                       else (result, None))
    if contains_poison(result):
        raise Abort()  # its error is reported where it failed
    if not (isinstance(scalar, Tensor) and scalar.shape == () and dt.is_inexact(scalar.dtype)):
        raise r.error("AOT425", f"loss '{loss.name}' must return a scalar float array (or "
                      f"(loss, {{'metric': array}})), got {describe_value(scalar)}",
                      loss.definition.name_span if loss.definition else span,
                      notes=(Note("used by this train target", span),))
    if metrics is not None and not (isinstance(metrics, dict) and all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in metrics.items())):
        raise r.error("AOT425", f"loss '{loss.name}' metrics must be a dict of arrays, got "
                      f"{describe_value(metrics)}", loss.span)
    doc = f"Loss `{loss.name}`" + (", with metrics" if metrics is not None else "")
    result_code = value_code((scalar, metrics)) if metrics is not None else value_code(scalar)
    return Function(
        name=r._function_name(loss.name), doc=doc, takes_params=False, state_collections=(),
        takes_rng=False, inputs=tuple(inputs), body=tuple(prologue + fn.ops),
        result=result_code, result_tensors=tuple(tensors((scalar, metrics))), span=loss.span,
        hints=dict(fn.hints)), metrics is not None


__all__ = ["TRAIN_ONLY", "call_optax", "multi_optimizer", "optimizer_code", "resolve_train",
           "train_options", "traversal", "traversal_method"]
