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
    StaticError,
    Traversal,
    describe_value,
    is_static,
    to_code,
)
from .base import Frame, _Return
from .helpers import _tensors, _unpack_code

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
        path = "/" + "/".join(decl.path)
        label = "frozen"
        for i, (trav, _) in enumerate(optimizer.groups):
            frame = Frame(Env(r.globals), None, None)
            hit = r._call_closure(trav.filter, [path, Tensor(decl.shape, decl.dtype)], {},
                                  trav.span, frame)
            if not isinstance(hit, bool):
                raise r.error("AOT421", f"a ModelParamTraversal filter must return a static "
                              f"bool, got {describe_value(hit)} for {path}", trav.span)
            if hit:
                label = f"group_{i}"
                break
        labels.append((decl.path, label))
    transforms = [f'"group_{i}": {opt.code}' for i, (_, opt) in enumerate(optimizer.groups)]
    transforms.append('"frozen": optax.set_to_zero()')
    return ("optax.multi_transform({" + ", ".join(transforms) + "}, "
            f"{labels_variable(target)})", tuple(labels))


def resolve_train(r: "Resolver", decl: Any, entry_result: Any, span: Span,
                  params: tuple[ParamDecl, ...]) -> TrainProgram:
    """The loss function and optimizer of a training target."""
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
    outputs = _fresh_copy(entry_result)
    loss_tensors = [Tensor(tuple(r._dim_value(d, s.span) for d in s.shape), s.dtype)
                    for _, s in loss_inputs]
    key = ("loss", id(loss), tuple((t.shape, t.dtype) for t in _leaves(outputs)),
           tuple((t.shape, t.dtype) for t in loss_tensors))
    if key not in r.loss_cache:
        fn, has_metrics = _loss_function(r, loss, [outputs, *loss_tensors],
                                         [n for n, _ in loss_inputs], span)
        r.functions.append(fn)
        r.loss_cache[key] = (fn, has_metrics)
    fn, has_metrics = r.loss_cache[key]
    code, labels = optimizer_code(r, decl.optimizer, params, span, decl.name)
    return TrainProgram(fn, tuple((n, tuple(s.shape), s.dtype) for n, s in batch), code,
                        has_metrics, labels, tuple(n for n, _ in loss_inputs))


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
        leaves = _tensors(output)
        prologue.append(Op("ops/module_call.j2", (("target", _unpack_code(output, output, [])),
                                                  ("call", Code((var,)))),
                           tuple(leaves), (), loss.span, first))
    env.set(first, output)
    for name, t in zip(batch_names, args[1:]):
        fn.hint(t, name)
        inputs.append((name, t))
        env.set(name, t)
    for p in loss.params.params[1:]:
        if p.name not in batch_names:
            env.set(p.name, loss.defaults[p.name])
    result: Any = None
    try:
        r._exec_block(loss.body, Frame(env, fn, None))
    except _Return as ret:
        result = ret.value
    scalar, metrics = (result if isinstance(result, tuple) and len(result) == 2
                       else (result, None))
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
        result=result_code, result_tensors=tuple(_tensors((scalar, metrics))), span=loss.span,
        hints=dict(fn.hints)), metrics is not None


__all__ = ["call_optax", "multi_optimizer", "optimizer_code", "resolve_train", "traversal"]
