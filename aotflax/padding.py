"""Buckets: the declaration, and the proof that padding cannot change what a caller gets.

`aot.target(..., x=aot.f32["batch", 784], buckets={"batch": (1, 8, 32)})` ships
one native executable per bucket size; `load()` runs a request of any size on
the smallest bucket that fits, padding every input along the dimension and
slicing every output back.  That is only correct when each position of an
output depends on the same position of the inputs alone, never on the padded
ones.  This module proves it over the resolved program, before anything is
emitted, or reports the operation that mixes positions as a located error.

The proof is a dataflow pass over every op the target runs (its submodules',
modules applied with given parameters, scan steps', and the functions of
`jax.vmap`, `jax.checkpoint` and `jax.jvp` included).  A symbolic dimension resolves as a large prime
sentinel size (`symbolic.py`), so an axis that carries it is recognized by its
size.  Each op records how it moves its inputs' axes (`program.Flow`, from
the rules of `ops/axes.py`); an axis that carries a bucketed dimension must
reach its outputs position by position.  An op that mixes positions along it
(a reduction, a contraction, BatchNorm with batch statistics, a reshape that
merges it, a window, random numbers drawn over it, its size used as a number)
rejects the target.  Attention over a padded length is the one mixing op that
can be safe: when its mask is false at every padded key, either because it is
causal (no real query sees a later key) or because it comes, through products,
casts and reshapes, from an input the target declares as that dimension's
mask (`masks={"length": "mask"}`), which the runtime pads with zeros.

A dimension along which nothing mixes at all is also *splittable*: a request
above its largest bucket runs as several calls of the largest bucket,
concatenated.  A dimension attention runs over is not (a later chunk would
need the keys of an earlier one).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import ir
from .diagnostics import BuildError, Diagnostic, Note, Span
from .program import Code, FileProgram, Flow, Function, Mix, Op, TargetProgram, Tensor, Var
from .values import describe_value

__all__ = ["Declaration", "annotate", "check", "declaration", "check_declaration"]

#: At most this many executables per target (one per combination of bucket sizes).
MAX_EXECUTABLES = 64

_NOTE = ("padding fills the positions past a request with {pad}; an operation that combines "
         "positions along '{dim}' would let them change the values the caller gets back")


#: Ops over nested functions resolve emits (`resolve/control.py`): their inputs, and the
#: arrays their functions read from around them, may move in any way.
_NESTED_CONTROL = frozenset({"jax.lax.cond", "jax.lax.switch", "jax.lax.while_loop",
                             "jax.lax.fori_loop"})


@dataclass(frozen=True)
class Declaration:
    """What `aot.target` says about buckets, as the resolver parsed it."""

    #: Sizes per symbolic dimension, ascending.
    buckets: tuple[tuple[str, tuple[int, ...]], ...] = ()
    #: Fill value per input (default 0 / False).
    pad_values: tuple[tuple[str, Any], ...] = ()
    #: Inputs that mask each dimension's padded positions.
    masks: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: Where each keyword was written, for errors.
    spans: dict[str, Span] = field(default_factory=dict, compare=False, hash=False)


# ------------------------------------------------------------- the declaration


def declaration(r: Any, kwargs: dict[str, Any], call: ir.Call, span: Span) -> Declaration:
    """Pops `buckets=`, `pad_value=` and `masks=` from a target's keywords and checks
    their form (the names they use are checked against the inputs later).

    **Arguments:** `r`: the resolver (for located errors); `kwargs`: the call's
    keywords; `call`: the `aot.target(...)` call.
    """
    spans = {kw.name: kw.span for kw in call.keywords if kw.name}
    where = {k: spans.get(k, span) for k in ("buckets", "pad_value", "masks")}
    buckets = kwargs.pop("buckets", None)
    pad = kwargs.pop("pad_value", None)
    masks = kwargs.pop("masks", None)
    out_buckets: list[tuple[str, tuple[int, ...]]] = []
    if buckets is not None:
        if not isinstance(buckets, dict) or not buckets:
            raise r.error("AOT412", "buckets= must be a dict from a symbolic dimension to its "
                          f"sizes, such as {{\"batch\": (1, 8, 32)}}, got "
                          f"{describe_value(buckets)}", where["buckets"])
        count = 1
        for dim, sizes in buckets.items():
            if not isinstance(dim, str) or not dim.isidentifier():
                raise r.error("AOT412", f"buckets= keys name symbolic dimensions such as "
                              f"\"batch\", got {describe_value(dim)}", where["buckets"])
            items = sizes if isinstance(sizes, (tuple, list)) else (sizes,)
            if not items or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                    for s in items):
                raise r.error("AOT412", f"buckets of '{dim}' must be positive ints, got "
                              f"{describe_value(sizes)}", where["buckets"])
            if len(set(items)) != len(items):
                raise r.error("AOT412", f"buckets of '{dim}' repeat a size: "
                              f"{describe_value(sizes)}", where["buckets"])
            if max(items) > 1 << 24:
                raise r.error("AOT412", f"bucket {max(items)} of '{dim}' is too large",
                              where["buckets"])
            count *= len(items)
            out_buckets.append((dim, tuple(sorted(items))))
        if count > MAX_EXECUTABLES:
            raise r.error("AOT412", f"buckets= asks for {count} executables (one per "
                          f"combination of sizes); at most {MAX_EXECUTABLES} are built",
                          where["buckets"], hint="use fewer sizes: a request pads to the "
                          "next one up")
    out_pad: list[tuple[str, Any]] = []
    if pad is not None:
        if not isinstance(pad, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float, bool)) for k, v in pad.items()):
            raise r.error("AOT414", "pad_value= must be a dict from an input name to a number, "
                          f"such as {{\"tokens\": 0}}, got {describe_value(pad)}",
                          where["pad_value"])
        if any(isinstance(v, float) and v != v or v in (float("inf"), float("-inf"))
               for v in pad.values()):
            raise r.error("AOT414", "pad_value= values must be finite numbers",
                          where["pad_value"])
        out_pad = sorted(pad.items())
    out_masks: list[tuple[str, tuple[str, ...]]] = []
    if masks is not None:
        ok = isinstance(masks, dict) and all(
            isinstance(k, str) and (isinstance(v, str) or (
                isinstance(v, (tuple, list)) and v and all(isinstance(n, str) for n in v)))
            for k, v in masks.items())
        if not ok:
            raise r.error("AOT414", "masks= must be a dict from a symbolic dimension to the "
                          "input(s) that mask it, such as {\"length\": \"mask\"}, got "
                          f"{describe_value(masks)}", where["masks"])
        out_masks = [(k, (v,) if isinstance(v, str) else tuple(v)) for k, v in masks.items()]
    if (pad is not None or masks is not None) and buckets is None:
        which = "pad_value=" if pad is not None else "masks="
        raise r.error("AOT414", f"{which} only applies to a target with buckets=",
                      where["pad_value" if pad is not None else "masks"],
                      hint="add buckets={\"batch\": (1, 8, 32)}, or drop it")
    return Declaration(tuple(out_buckets), tuple(out_pad), tuple(out_masks), where)


def check_declaration(r: Any, decl: Any, train: bool) -> None:
    """Checks the names buckets, pad values and masks use against the target's inputs.

    **Arguments:** `r`: the resolver; `decl`: its `TargetDecl` (with `serving`, a
    `Declaration`); `train`: whether it is a training target.
    """
    d: Declaration = decl.serving
    if not d.buckets:
        return
    where = d.spans
    if train:
        raise r.error("AOT412", "a training target cannot have buckets=: a train step's "
                      "gradients and statistics mix the rows of its batch", where["buckets"])
    symbolic: dict[str, list[str]] = {}
    for name, spec in decl.specs.items():
        for dim in spec.shape:
            if isinstance(dim, str):
                symbolic.setdefault(dim, []).append(name)
    bucketed = dict(d.buckets)
    for dim in bucketed:
        if dim not in symbolic:
            known = ", ".join(f"'{s}'" for s in symbolic) or "none"
            raise r.error("AOT412", f"buckets= names '{dim}', which no input of target "
                          f"'{decl.name}' has as a dimension (its symbolic dimensions: "
                          f"{known})", where["buckets"],
                          hint="write the dimension as a string in an input spec: "
                               "x=aot.f32[\"batch\", 784]")
    missing = [s for s in symbolic if s not in bucketed]
    if missing:
        raise r.error("AOT412", f"symbolic dimension '{missing[0]}' of target '{decl.name}' "
                      "has no buckets: a native executable needs a size for every dimension",
                      where["buckets"], hint=f"add \"{missing[0]}\": (...) to buckets=")
    for name, value in d.pad_values:
        spec = decl.specs.get(name)
        if spec is None:
            raise r.error("AOT414", f"pad_value= names '{name}', which is not an input of "
                          f"target '{decl.name}' (its inputs: {', '.join(decl.specs)})",
                          where["pad_value"])
        if not any(isinstance(dim, str) for dim in spec.shape):
            raise r.error("AOT414", f"pad_value= names '{name}', which has no symbolic "
                          "dimension and is never padded", where["pad_value"])
        if not _fits(value, spec.dtype):
            raise r.error("AOT414", f"pad_value {value!r} for '{name}' does not fit its dtype "
                          f"{spec.dtype}", where["pad_value"])
    pads = dict(d.pad_values)
    for dim, names in d.masks:
        if dim not in bucketed:
            raise r.error("AOT414", f"masks= names dimension '{dim}', which has no buckets",
                          where["masks"])
        for name in names:
            spec = decl.specs.get(name)
            if spec is None or dim not in spec.shape:
                raise r.error("AOT414", f"masks= says input '{name}' masks '{dim}', but "
                              f"target '{decl.name}' has no input '{name}' with dimension "
                              f"'{dim}'", where["masks"])
            if pads.get(name, 0) not in (0, False):
                raise r.error("AOT414", f"mask input '{name}' must pad with 0 (false: the "
                              f"padded positions are masked out), got pad_value "
                              f"{pads[name]!r}", where["pad_value"])


def _fits(value: Any, dtype: str) -> bool:
    if dtype == "bool":
        return isinstance(value, bool) or value in (0, 1)
    if dtype.startswith(("int", "uint")):
        return isinstance(value, (int, bool)) or (isinstance(value, float)
                                                  and value.is_integer())
    return True


# ------------------------------------------------------------- the proof


@dataclass
class _Frame:
    """Facts about the tensors of one function being checked."""

    #: id(tensor) -> axes that are zero (false) at every padded position.
    zeros: dict[int, set[int]] = field(default_factory=dict)
    #: ids of causal masks (zero above the diagonal of their last two axes).
    causal: set[int] = field(default_factory=set)


class _Checker:
    """Checks every op a target runs (see the module docstring)."""

    def __init__(self, target: TargetProgram, sizes: dict[str, int],
                 functions: dict[str, Function]):
        self.target = target
        #: Bucketed dimension -> its sentinel size.
        self.sizes = sizes
        self.by_size = {v: k for k, v in sizes.items()}
        self.functions = functions
        self.errors: list[Diagnostic] = []
        self.reported: set[tuple[int, int, str]] = set()
        #: Dimensions a request cannot be split along: attention runs over them, an op
        #: reads their first position or their positions, or a tensor has them twice.
        self.unsplittable: set[str] = set()
        #: Checked (function, facts of its inputs) -> the facts after its body.
        self.done: dict[tuple[str, frozenset], _Frame] = {}
        self.pads = dict(target.pad_values)
        self.size_re = re.compile("(?<![\\w.])(" + "|".join(str(v) for v in sizes.values())
                                  + ")(?![\\w.])") if sizes else None

    def dims(self, t: Any) -> list[tuple[int, str]]:
        """(axis, dimension) of every axis of `t` that carries a bucketed dimension."""
        if not isinstance(t, Tensor):
            return []
        return [(a, self.by_size[d]) for a, d in enumerate(t.shape) if d in self.by_size]

    # ------------------------------------------------------------------ walking

    def run(self) -> None:
        fn = self.target.function
        frame = _Frame()
        for dim, names in self.target.masks:
            size = self.sizes[dim]
            for name, t in fn.inputs:
                if name in names and isinstance(t, Tensor):
                    frame.zeros.setdefault(id(t), set()).update(
                        a for a, d in enumerate(t.shape) if d == size)
        self.function(fn, frame, ())

    def function(self, fn: Function, frame: _Frame,
                 sites: tuple[tuple[str, Span], ...]) -> _Frame:
        """Checks `fn`'s body once per combination of facts about its inputs.

        **Returns:** the facts about its tensors afterwards (its results' among them).
        """
        key = (fn.name, frozenset((i, frozenset(frame.zeros.get(id(t), ())),
                                   id(t) in frame.causal) for i, (_, t) in
                                  enumerate(fn.inputs)))
        if key in self.done:
            return self.done[key]
        self.done[key] = frame
        for op in fn.body:
            self.op(op, frame, sites)
        return frame

    def op(self, op: Op, frame: _Frame, sites: tuple[tuple[str, Span], ...]) -> None:
        info = op.info
        if op.template == "ops/module_call.j2" and info is not None and info.callee:
            self.module_call(op, info.callee, frame, sites)
            return
        if op.template == "ops/scan.j2":
            self.scan(op, frame, sites)
            return
        if op.nested and (info is None or info.entry not in _NESTED_CONTROL):
            self.transformed(op, sites)
            return
        flow = info.flow if info is not None else None
        if flow is None:
            flow = self.builtin(op)
        if flow is None:
            return
        self.apply(op, flow, frame, sites)

    def builtin(self, op: Op) -> Flow | None:
        """Ops resolve emits itself: parameter and state reads, `x.T`, constants."""
        tensors = [v for v in op.inputs() if isinstance(v, Tensor)]
        if not tensors:
            return None
        parts = [p for _, code in op.args for p in code.parts]
        if len(tensors) == 1 and parts[-1:] == [".T"]:
            t = tensors[0]
            return Flow(((t, tuple(reversed(range(t.ndim)))),), zeros="aligned")
        if op.info is not None and op.info.entry in _NESTED_CONTROL:
            # its branches or loop body may reduce, index or loop over any axis
            return Flow(tuple((t, tuple(Mix(f"goes through {op.info.entry}'s functions, "
                                            "which aotflax does not follow axis by axis")
                                        for _ in t.shape)) for t in tensors))
        if op.template == "ops/module_call.j2":  # unpacking a tuple argument
            return None
        return Flow(tuple((t, tuple(Mix("moves it in a way aotflax cannot follow")
                                    for _ in t.shape)) for t in tensors))

    # ------------------------------------------------------------------ one op

    def apply(self, op: Op, flow: Flow, frame: _Frame,
              sites: tuple[tuple[str, Span], ...]) -> None:
        outputs = [v for v in op.outputs if isinstance(v, Tensor)]
        for t, axes in flow.inputs:
            for a, dim in self.dims(t):
                if a >= len(axes):
                    continue
                target = axes[a]
                if isinstance(target, Mix):
                    self.mixed(op, target, dim, t, a, frame, sites)
                elif isinstance(target, int) and outputs and not any(
                        o.ndim > target and o.shape[target] == t.shape[a] for o in outputs):
                    self.fail(op, dim, "changes its size", sites)
        for o in outputs:
            carried = [d for _, d in self.dims(o)]
            self.unsplittable.update(d for d in carried if carried.count(d) > 1)
            if flow.positions:
                self.unsplittable.update(carried)
        if flow.random and any(self.dims(o) for o in outputs):
            dim = self.dims(next(o for o in outputs if self.dims(o)))[0][1]
            self.fail(op, dim, "draws random numbers over it, and the numbers drawn for a "
                      "padded shape differ from those drawn at the request's size", sites)
        if not flow.sizes and self.size_re is not None:
            text = "".join(p for _, code in op.args for p in code.parts if isinstance(p, str))
            found = self.size_re.search(text)
            if found:
                dim = self.by_size[int(found.group(1))]
                self.fail(op, dim, f"uses the size of '{dim}' as a number: padded to a "
                          "bucket, the program would see the bucket's size instead of the "
                          "request's", sites)
        self.propagate(flow, outputs, frame)

    def mixed(self, op: Op, mix: Mix, dim: str, t: Tensor, axis: int, frame: _Frame,
              sites: tuple[tuple[str, Span], ...]) -> None:
        if mix.first:
            self.unsplittable.add(dim)
            return
        if mix.keys is None:
            self.fail(op, dim, mix.why, sites)
            return
        self.unsplittable.add(dim)
        if mix.keys.causal:
            return
        for mask, key_axis in mix.keys.masks:
            if id(mask) in frame.causal or key_axis in frame.zeros.get(id(mask), ()):
                return
        declared = [n for d, ns in self.target.masks if d == dim for n in ns]
        hint = (f"the mask must come from input{'s' if len(declared) > 1 else ''} "
                f"{', '.join(declared)} (declared in masks=) through products, casts and "
                "reshapes, e.g. nn.make_attention_mask(mask, mask)" if declared else
                f"pass an attention mask built from an input that is false at padded "
                f"positions and declare it: masks={{\"{dim}\": \"mask\"}}; or causal_mask=True")
        self.fail(op, dim, f"{mix.why} with a mask that does not hide the padded positions",
                  sites, hint=hint)

    def propagate(self, flow: Flow, outputs: Sequence[Tensor], frame: _Frame) -> None:
        if flow.zeros == "causal":
            frame.causal.update(id(o) for o in outputs)
            return
        if flow.zeros != "aligned":
            return
        for t, axes in flow.inputs:
            for a in frame.zeros.get(id(t), ()):
                b = axes[a] if a < len(axes) else None
                if isinstance(b, int):
                    for o in outputs:
                        if o.ndim > b and o.shape[b] == t.shape[a]:
                            frame.zeros.setdefault(id(o), set()).add(b)
            if id(t) in frame.causal and all(isinstance(x, int) for x in axes[-2:]) \
                    and len(axes) >= 2 and axes[-2:] == (len(axes) - 2, len(axes) - 1):
                frame.causal.update(id(o) for o in outputs if o.ndim == t.ndim)

    # ------------------------------------------------------------------ calls

    def module_call(self, op: Op, callee: Function, frame: _Frame,
                    sites: tuple[tuple[str, Span], ...]) -> None:
        name = callee.doc.split(".")[0]
        inner = _Frame()
        args = _call_arguments(dict(op.args)["call"], callee)
        for (_, param), arg in zip(callee.inputs, args):
            passed = [v for v in arg if isinstance(v, Tensor)]
            targets = [param] if isinstance(param, Tensor) else _unpacked(callee, param)
            for src, dst in zip(passed, targets):
                if isinstance(dst, Tensor) and src.shape == dst.shape:
                    if id(src) in frame.zeros:
                        inner.zeros[id(dst)] = set(frame.zeros[id(src)])
                    if id(src) in frame.causal:
                        inner.causal.add(id(dst))
        inner = self.function(callee, inner, (*sites, (name, op.span)))
        outs = [v for v in op.outputs if isinstance(v, Tensor)]
        for src, dst in zip(callee.result_tensors, outs):
            if src.shape == dst.shape:
                if id(src) in inner.zeros:
                    frame.zeros[id(dst)] = set(inner.zeros[id(src)])
                if id(src) in inner.causal:
                    frame.causal.add(id(dst))

    def scan(self, op: Op, frame: _Frame, sites: tuple[tuple[str, Span], ...]) -> None:
        xs = dict(op.args).get("xs")
        for t in (xs.vars() if xs is not None else ()):
            if isinstance(t, Tensor) and t.ndim and t.shape[0] in self.by_size:
                self.fail(op, self.by_size[t.shape[0]], "scans along it: each step depends "
                          "on the steps before it, and the final carry on the padded steps",
                          sites)
        for nested in op.nested:
            self.function(nested, _Frame(), sites)

    def transformed(self, op: Op, sites: tuple[tuple[str, Span], ...]) -> None:
        """`jax.vmap`, `jax.checkpoint`, `jax.jvp` over a nested function: its body is checked
        as any other (without facts about its inputs: a mask it receives is not trusted).

        The transformation itself moves no position: checkpoint and jvp run the function on
        the arrays as they are (a tangent goes through the same operations), and vmap
        stacks the rows of one mapped axis in order.  A bucketed axis that is not the mapped
        one reaches the body in its rows, where its size marks it as everywhere else."""
        for nested in op.nested:
            self.function(nested, _Frame(), (*sites, (_describe_op(op), op.span)))

    # ------------------------------------------------------------------ errors

    def fail(self, op: Op, dim: str, why: str, sites: tuple[tuple[str, Span], ...],
             hint: str | None = None) -> None:
        key = (op.span.line, op.span.col, dim)
        if key in self.reported:
            return
        self.reported.add(key)
        what = _describe_op(op)
        pad = self.pad_words(dim)
        notes = [Note(_NOTE.format(pad=pad, dim=dim) + f", so target '{self.target.name}' "
                      "cannot be bucketed along it")]
        notes += [Note(f"in {name}, called here", span) for name, span in reversed(sites)
                  if (span.path, span.line) != (op.span.path, op.span.line)]
        notes.append(Note(f"buckets of target '{self.target.name}' declared here",
                          self.target.span))
        self.errors.append(Diagnostic(
            "AOT413", f"{what} mixes positions along bucketed dimension '{dim}': it {why}",
            op.span, notes=tuple(notes), hint=hint or (
                f"keep '{dim}' out of this operation, or drop buckets= for '{dim}' (load() "
                "then compiles each new size once per process)")))

    def pad_words(self, dim: str) -> str:
        names = [n for n, s, _ in self.target.inputs if self.sizes[dim] in s]
        values = {self.pads.get(n, 0) for n in names}
        return "zeros" if all(v == 0 for v in values) else " and ".join(
            f"{self.pads.get(n, 0)!r} ({n})" for n in names)


def _describe_op(op: Op) -> str:
    entry = op.info.entry if op.info is not None else ""
    if entry.startswith("operator."):
        return "this indexing" if entry == "operator.getitem" else "this operator"
    if entry.startswith("array."):
        return f"x.{entry.split('.', 1)[1]}"
    if entry.startswith("at."):
        return f"x.at[...].{entry.split('.', 1)[1]}"
    if entry == "jax.lax.scan":
        return "jax.lax.scan"
    return entry or "this operation"


def _call_arguments(code: Code, callee: Function) -> list[list[Any]]:
    """The code of each input argument of a generated call `f(params, state..., x, y, rng=)`,
    as the lists of its parts (split at the call's top-level commas)."""
    args: list[list[Any]] = [[]]
    depth = 0
    for part in code.parts:
        if isinstance(part, str):
            if depth == 1 and part == ", ":
                args.append([])
                continue
            before = depth
            depth += sum(part.count(c) for c in "([{") - sum(part.count(c) for c in ")]}")
            if before == 0:
                continue  # the function's name and the opening parenthesis
        args[-1].append(part)
    lead = int(callee.takes_params) + len(callee.state_collections)
    inputs = args[lead:lead + len(callee.inputs)]
    return [[p for p in a if isinstance(p, Var)] for a in inputs]


def _unpacked(callee: Function, var: Var) -> list[Tensor]:
    """The tensors a tuple argument is unpacked into on entry (see `_build_specialization`)."""
    for op in callee.body:
        if op.template == "ops/module_call.j2" and any(v is var for v in op.inputs()):
            return [v for v in op.outputs if isinstance(v, Tensor)]
    return []


# ------------------------------------------------------------- entry points


def has_buckets(program: FileProgram) -> bool:
    """Whether any target of the program declares `buckets=` (and needs `check`)."""
    return any(t.buckets for t in program.targets)


def check(program: FileProgram, sentinels: Any) -> dict[str, tuple[str, ...]]:
    """Proves padding safe for every bucketed target of a program resolved with the `A`
    sentinels, or raises `BuildError` naming every op that mixes positions.

    **Arguments:** `program`: resolved with `sentinels` (`symbolic.Sentinels`), plain
    sizes (`sizes.plain_sizes`), so that a size used as a value shows as its number, and
    its ops' flows recorded (`ops.axes.record_flows`).

    **Returns:** per bucketed target, the dimensions a request above the largest
    bucket may be split along (see the module docstring).
    """
    functions = {f.name: f for f in program.functions}
    errors: list[Diagnostic] = []
    splits: dict[str, tuple[str, ...]] = {}
    for t in program.targets:
        if not t.buckets:
            continue
        sizes = {dim: sentinels.names[dim] for dim, _ in t.buckets if dim in sentinels.names}
        carried = _state_dims(t, sizes)
        if carried:
            errors.append(Diagnostic(
                "AOT412", f"target '{t.name}' keeps state that carries bucketed dimension "
                f"'{carried}' (its shape depends on the request's size), which cannot be "
                "padded", t.span, hint="bucket a target without such state (a decoding cache "
                "sized by the batch)"))
            continue
        checker = _Checker(t, sizes, functions)
        checker.run()
        errors += checker.errors
        splits[t.name] = tuple(d for d, _ in t.buckets if d not in checker.unsplittable)
    if errors:
        raise BuildError(errors)
    return splits


def _state_dims(t: TargetProgram, sizes: dict[str, int]) -> str | None:
    by_size = {v: k for k, v in sizes.items()}
    for decl in (*t.params, *t.state):
        for d in decl.shape:
            if d in by_size:
                return by_size[d]
    return None


def annotate(program: FileProgram, splits: dict[str, tuple[str, ...]]) -> FileProgram:
    """The program with each bucketed target's splittable dimensions recorded."""
    if not splits:
        return program
    targets = tuple(replace(t, splittable=splits.get(t.name, ())) if t.buckets else t
                    for t in program.targets)
    return replace(program, targets=targets)

