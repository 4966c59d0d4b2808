"""Axis rules: where every operation of the table moves the axes of its inputs.

Each entry of the operation table has one rule here, keyed by its qualified
name (`registry.qualname`), like its FLOP rule (`flops.py`); a test fails when
an entry has none.  While `record_flows()` is on (the resolve of the padding
proof), `FnCall.op_info` asks `flow` for every op an entry emits and records
the answer on the op (`program.OpInfo.flow`), where `aotflax/padding.py` reads
it to prove that padding a bucketed dimension cannot change the rows a caller
gets; other resolves, whose flows nothing reads, skip the work.

A rule says, for every axis of every input tensor of the op, one of:

- an output axis: position `i` along the input axis reaches position `i` of
  that output axis and no other position (elementwise functions, the batch
  axes of Dense and Conv, reshapes and transposes that keep the axis whole);
- `None`: no output depends on positions along it (a broadcast size-1 axis,
  the input of `zeros_like`);
- a `Mix`: the op combines positions along it (a reduction, a contraction, a
  window, a sort, a reshape that merges it with another axis), saying what it
  does in the user's words.  Attention over keys is a `Mix` with `Keys`: it is
  safe to pad when the padded keys are masked out (a causal mask, or a mask
  input padded with zeros).

Rules are small and declarative: a family (`ELEMENTWISE`, `reduce(...)`,
`along(...)`, `LAYOUT`, contractions, `CREATE`, `RANDOM`) per entry, and for
layers one rule per statement template (`TEMPLATES`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from .. import shapes as sh
from ..program import Axis, Code, Flow, Keys, Mix, Tensor, Var
from .flops import OpView
from .registry import Entry, qualname

__all__ = ["RULES", "TEMPLATES", "AxisRule", "flow", "record_flows", "recording_flows",
           "rule_for"]

_RECORDING = ContextVar("aotflax_record_flows", default=False)


@contextmanager
def record_flows() -> Iterator[None]:
    """Resolve with each op's `Flow` recorded (only the padding proof reads them)."""
    token = _RECORDING.set(True)
    try:
        yield
    finally:
        _RECORDING.reset(token)


def recording_flows() -> bool:
    """Whether ops record their `Flow` now (see `record_flows`)."""
    return _RECORDING.get()


@dataclass(frozen=True)
class AxisRule:
    """How one entry (or template) moves axes; `text` is what the docs say."""

    text: str
    fn: Callable[[OpView], Flow]


#: What a rule that fails on an unusual call says (every axis mixes: never a wrong proof).
UNKNOWN = "moves it in a way aotflax has no axis rule for"


def flow(call: Any, template: str, args: dict[str, Code], outputs: Sequence[Var]) -> Flow:
    """The `Flow` of one op that `call` emits (see the module docstring).

    Only bucketed targets read it, so a rule that cannot follow an unusual call does
    not fail the build: every axis of the op counts as mixed (`UNKNOWN`), which can
    only reject a bucketed target, never prove a wrong one safe.
    """
    view = OpView(call, template, args, tuple(outputs))
    rule = rule_for(call.entry)
    try:
        return rule.fn(view)
    except (AssertionError, AttributeError, IndexError, KeyError, TypeError, ValueError):
        return _flow([_mixed(t, UNKNOWN) for t in _unique(view.tensors())])


def rule_for(entry: Entry) -> AxisRule:
    """The rule of a table entry; a missing one is a compiler bug (the coverage test)."""
    name = qualname(entry)
    rule = RULES.get(name)
    if rule is None:
        raise KeyError(f"no axis rule for operation {name} (add one to aotflax/ops/axes.py)")
    return rule


# ------------------------------------------------------------- helpers


def _unique(tensors: Sequence[Tensor]) -> list[Tensor]:
    seen: dict[int, Tensor] = {}
    for t in tensors:
        seen.setdefault(id(t), t)
    return list(seen.values())


def _axis(axis: Any, ndim: int) -> int | None:
    """A normalized axis, or None for an invalid one (the rule already rejected those)."""
    if isinstance(axis, bool) or not isinstance(axis, int) or ndim == 0:
        return None
    return axis % ndim if -ndim <= axis < ndim else None


def _axes(value: Any, ndim: int) -> set[int] | None:
    """The axes an `axis=` argument names; None means all of them."""
    if value is None:
        return None
    items = value if isinstance(value, (tuple, list)) else (value,)
    out = {_axis(a, ndim) for a in items}
    return None if None in out else out  # type: ignore[return-value]


def _aligned(t: Tensor, out: Tensor | None) -> tuple[Axis, ...]:
    """Broadcasting: axes align from the right; a size-1 axis that broadcasts reaches none."""
    if out is None:
        return tuple(None for _ in t.shape)
    shift = out.ndim - t.ndim
    return tuple(a + shift if a + shift >= 0 and t.shape[a] == out.shape[a + shift]
                 else None for a in range(t.ndim))


def _out(view: OpView) -> Tensor | None:
    outs = [v for v in view.outputs if isinstance(v, Tensor)]
    return outs[0] if outs else None


def _flow(entries: Sequence[tuple[Tensor, tuple[Axis, ...]]], **kw: Any) -> Flow:
    """A `Flow`; one tensor may appear with several mappings (`mask` as query and key)."""
    merged: dict[tuple[int, tuple[Axis, ...]], tuple[Tensor, tuple[Axis, ...]]] = {}
    for t, axes in entries:
        merged.setdefault((id(t), axes), (t, axes))
    return Flow(tuple(merged.values()), **kw)


def _mixed(t: Tensor, why: str) -> tuple[Tensor, tuple[Axis, ...]]:
    return t, tuple(Mix(why) for _ in t.shape)


def _others(view: OpView, main: Tensor, axes: tuple[Axis, ...],
            ) -> list[tuple[Tensor, tuple[Axis, ...]]]:
    """Further tensors of an op (a `where=` mask, a weight) broadcast against its main input:
    each of their axes goes where the main input's axis it broadcasts against goes."""
    out = []
    for t in _unique(view.tensors()):
        if t is main:
            continue
        shift = main.ndim - t.ndim
        out.append((t, tuple(axes[a + shift] if a + shift >= 0 and t.shape[a] ==
                             main.shape[a + shift] else None for a in range(t.ndim))))
    return out


# ------------------------------------------------------------- families


def _elementwise(zeros: str = "") -> Callable[[OpView], Flow]:
    def rule(view: OpView) -> Flow:
        out = _out(view)
        return _flow([(t, _aligned(t, out)) for t in _unique(view.tensors())], zeros=zeros)

    return rule


ELEMENTWISE = AxisRule("elementwise: every axis reaches the output axis it broadcasts to",
                       _elementwise())
#: Elementwise, and zero wherever an input is zero (products, casts): a mask stays a mask.
PRODUCT = AxisRule("elementwise; zero where an input is zero (a mask stays a mask)",
                   _elementwise("aligned"))


def _reduce(view: OpView) -> Flow:
    x = view.first_input()
    if x is None:
        return Flow()
    axes = _axes(view.bound("axis"), x.ndim)
    keep = bool(view.bound("keepdims", False))
    mapping: list[Axis] = []
    kept = 0
    for a in range(x.ndim):
        if axes is None or a in axes:
            mapping.append(Mix("reduces over it" if axes is not None
                               else "reduces over every axis"))
            kept += keep
        else:
            mapping.append(kept)
            kept += 1
    main = (x, tuple(mapping))
    return _flow([main, *_others(view, x, main[1])])


REDUCE = AxisRule("a reduction: the reduced axes mix, the others stay", _reduce)


def along(param: str, default: Any = -1, why: str = "works along it") -> AxisRule:
    """An op over one axis (`param`, e.g. softmax's `axis`): that axis mixes, others stay."""
    def rule(view: OpView) -> Flow:
        x = view.first_input()
        if x is None:
            return Flow()
        value = view.bound(param, default)
        axes = _axes(value, x.ndim)
        out = _out(view)
        same = x.ndim == (out.ndim if out is not None else x.ndim)
        mapping = tuple(Mix(why if axes is not None else f"{why} (over every axis)")
                        if axes is None or a in axes or not same else a for a in range(x.ndim))
        return _flow([(x, mapping), *_others(view, x, mapping)])

    return AxisRule(f"mixes along `{param}`, the other axes stay", rule)


def _create(view: OpView) -> Flow:
    return _flow([(t, tuple(None for _ in t.shape)) for t in _unique(view.tensors())],
                 sizes=True)


#: Creates an array: its content depends on no input position (`zeros`, `zeros_like`);
#: its shape may be a symbolic size.
CREATE = AxisRule("creates an array; depends on no input position", _create)


def _positions(view: OpView) -> Flow:
    return replace(_create(view), positions=True)


#: Creates an array of positions (`arange`, `eye`, `tri`).
POSITIONS = AxisRule("creates an array of positions", _positions)


def _linspace(view: OpView) -> Flow:
    """Static bounds make positions; array bounds (`jnp.linspace(jnp.log(a), ...)`) reach
    every sample: each axis of theirs mixes."""
    bounds = _unique(view.tensors())
    if not bounds:
        return _positions(view)
    return _flow([_mixed(t, "bounds every sample (linspace)") for t in bounds])




LINSPACE = AxisRule("creates an array of positions; array bounds mix into every sample",
                    _linspace)


def _triangle(view: OpView) -> Flow:
    return replace(_elementwise()(view), positions=True, sizes=True)


#: `tril` / `triu`: elementwise, zero on one side of the diagonal (positions matter).
TRIANGLE = AxisRule("elementwise; which entries are kept depends on their positions",
                    _triangle)


def _random(view: OpView) -> Flow:
    out = _out(view)
    return _flow([(t, _aligned(t, out)) for t in _unique(view.tensors())], random=True,
                 sizes=True)


RANDOM = AxisRule("random numbers over the output shape (they differ at another size)",
                  _random)


# ------------------------------------------------------------- layout


def reshape_axes(src: tuple[int, ...], dst: tuple[int, ...]) -> tuple[Axis, ...]:
    """Where each axis of a reshape from `src` to `dst` goes: an axis stays whole when
    `dst` has an axis of its size with the same number of elements before it."""
    out: list[Axis] = []
    before = 1
    for d in src:
        if d == 1:
            out.append(None)
        else:
            target: Axis = Mix("merges or splits it with another axis (a reshape)")
            prod = 1
            for b, e in enumerate(dst):
                if prod == before and e == d:
                    target = b
                    break
                prod *= e
            out.append(target)
        before *= d
    return tuple(out)


def _reshape(view: OpView) -> Flow:
    x, out = view.first_input(), _out(view)
    if x is None or out is None:
        return Flow(sizes=True)
    return _flow([(x, reshape_axes(x.shape, out.shape))], zeros="aligned", sizes=True)


RESHAPE = AxisRule("an axis stays when the reshape keeps it whole", _reshape)


def _transpose(view: OpView) -> Flow:
    x = view.first_input()
    if x is None:
        return Flow()
    axes = view.bound("axes")
    if isinstance(axes, (tuple, list)) and len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = axes[0]
    perm = [(_axis(a, x.ndim)) for a in axes] if axes else list(range(x.ndim))[::-1]
    return _flow([(x, tuple(perm.index(a) if a in perm else Mix("transposes it")
                            for a in range(x.ndim)))], zeros="aligned")


def _permute(view: OpView, order: list[int]) -> Flow:
    """Axis `order[k]` of the input becomes output axis k."""
    x = view.first_input()
    if x is None:
        return Flow()
    return _flow([(x, tuple(order.index(a) for a in range(x.ndim)))], zeros="aligned")


def _swapaxes(view: OpView) -> Flow:
    x = view.first_input()
    if x is None:
        return Flow()
    order = list(range(x.ndim))
    i, j = _axis(view.bound("axis1"), x.ndim), _axis(view.bound("axis2"), x.ndim)
    if i is not None and j is not None:
        order[i], order[j] = order[j], order[i]
    return _permute(view, order)


def _moveaxis(view: OpView) -> Flow:
    x = view.first_input()
    if x is None:
        return Flow()
    src, dst = view.bound("source"), view.bound("destination")
    src = [_axis(a, x.ndim) for a in (src if isinstance(src, (tuple, list)) else (src,))]
    dst = [_axis(a, x.ndim) for a in (dst if isinstance(dst, (tuple, list)) else (dst,))]
    if None in src or None in dst:
        raise ValueError("moveaxis: an axis out of range")  # flow() counts every axis mixed
    order = [a for a in range(x.ndim) if a not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return _permute(view, order)


def _by_shape(view: OpView) -> Flow:
    """Layout ops that keep every axis in order (expand_dims, squeeze, broadcast_to):
    an axis goes to the output axis of its size in order; a broadcast axis reaches none."""
    x, out = view.first_input(), _out(view)
    if x is None or out is None:
        return Flow(sizes=True)
    mapping: list[Axis] = []
    b = 0
    for d in x.shape:
        while b < out.ndim and out.shape[b] != d:
            b += 1
        if d == 1 or b >= out.ndim:
            mapping.append(None)
            continue
        mapping.append(b)
        b += 1
    if view.call.entry.name in ("broadcast_to", "broadcast"):  # lax.broadcast: new axes first
        mapping = list(_aligned(x, out))
    return _flow([(x, tuple(mapping))], zeros="aligned", sizes=True)


LAYOUT = AxisRule("moves axes without mixing positions (transpose, expand_dims, squeeze, "
                  "broadcast_to, lax.broadcast)", _by_shape)


def _tile(view: OpView) -> Flow:
    x, out = view.first_input(), _out(view)
    if x is None or out is None:
        return Flow()
    reps = view.bound("reps")
    reps = tuple(reps) if isinstance(reps, (tuple, list)) else (reps,)
    reps = (1,) * (x.ndim - len(reps)) + reps
    shift = out.ndim - x.ndim
    return _flow([(x, tuple(a + shift if reps[a - x.ndim] == 1 else Mix("repeats it (tile)")
                            for a in range(x.ndim)))])


def _repeat(view: OpView) -> Flow:
    x = view.first_input()
    if x is None:
        return Flow()
    axis = view.bound("axis")
    if axis is None:
        return _flow([_mixed(x, "flattens it (repeat without an axis)")])
    a0 = _axis(axis, x.ndim)
    return _flow([(x, tuple(Mix("repeats its positions") if a == a0 else a
                            for a in range(x.ndim)))])


def _pad(view: OpView) -> Flow:
    x = view.first_input()
    if x is None:
        return Flow()
    width = view.bound("pad_width")
    try:
        pairs = _pairs(width, x.ndim)
    except (TypeError, ValueError, IndexError):
        return _flow([_mixed(x, "pads it")])
    return _flow([(x, tuple(a if tuple(pairs[a]) == (0, 0) else Mix("pads it")
                            for a in range(x.ndim)))])


def _pairs(width: Any, ndim: int) -> list[tuple[int, int]]:
    """numpy's `pad_width` forms as one (before, after) pair per axis."""
    if isinstance(width, int):
        return [(width, width)] * ndim
    width = list(width)
    if width and all(isinstance(w, int) for w in width):
        if len(width) == 1:
            return [(width[0], width[0])] * ndim
        return [(width[0], width[1])] * ndim
    if len(width) == 1:
        lo, hi = width[0]
        return [(lo, hi)] * ndim
    return [(lo, hi) for lo, hi in width]


def _static_rank(value: Any) -> int:
    """Rank of a static index (an int, or nested lists of ints)."""
    rank = 0
    while isinstance(value, (list, tuple)) and value:
        rank, value = rank + 1, value[0]
    return rank


def _concatenate(view: OpView) -> Flow:
    out = _out(view)
    if out is None:
        return Flow()
    axis = _axis(view.bound("dimension", view.bound("axis", 0)), out.ndim)  # lax's, jnp's
    return _flow([(t, tuple(Mix("concatenates along it") if a == axis else a
                            for a in range(t.ndim))) for t in _unique(view.tensors())])


def _stack(view: OpView) -> Flow:
    out = _out(view)
    if out is None:
        return Flow()
    axis = _axis(view.bound("axis", 0), out.ndim)
    assert axis is not None
    return _flow([(t, tuple(a if a < axis else a + 1 for a in range(t.ndim)))
                  for t in _unique(view.tensors())], zeros="aligned")


def _vstack(view: OpView) -> Flow:
    """`jnp.vstack`: rows join along axis 0 (a vector is a row: its axis is axis 1)."""
    entries = []
    for t in _unique(view.tensors()):
        if t.ndim >= 2:
            entries.append((t, tuple(Mix("stacks along it (vstack)") if a == 0 else a
                                     for a in range(t.ndim))))
        elif t.ndim == 1:
            entries.append((t, (1,)))
    return _flow(entries)


def _hstack(view: OpView) -> Flow:
    """`jnp.hstack`: vectors join along their axis, arrays along axis 1."""
    tensors = _unique(view.tensors())
    joined = 0 if tensors and tensors[0].ndim == 1 else 1
    return _flow([(t, tuple(Mix("stacks along it (hstack)") if a == joined else a
                            for a in range(t.ndim))) for t in tensors if t.ndim])


def _diag(view: OpView) -> Flow:
    x = view.first_input()
    return Flow() if x is None else _flow([_mixed(x, "moves it to or from a diagonal (diag)")])


def _split(view: OpView) -> Flow:
    x = view.first_input()
    if x is None:
        return Flow()
    axis = _axis(view.bound("axis", 0), x.ndim)
    return _flow([(x, tuple(Mix("splits it") if a == axis else a for a in range(x.ndim)))])


def _take(view: OpView) -> Flow:
    a, idx = view.bound("a"), view.bound("indices")
    if not isinstance(a, Tensor):
        return Flow()
    axis = view.bound("axis")
    entries: list[tuple[Tensor, tuple[Axis, ...]]] = []
    k = idx.ndim if isinstance(idx, Tensor) else _static_rank(idx)
    if axis is None:
        entries.append(_mixed(a, "indexes into it, flattened (take without an axis)"))
        if isinstance(idx, Tensor):
            entries.append((idx, tuple(range(idx.ndim))))
        return _flow(entries)
    ax = _axis(axis, a.ndim)
    entries.append((a, tuple(Mix("gathers positions of it (take)") if j == ax else
                             j if ax is None or j < ax else j - 1 + k for j in range(a.ndim))))
    if isinstance(idx, Tensor):
        entries.append((idx, tuple((ax or 0) + j for j in range(idx.ndim))))
    return _flow(entries)


def _take_along_axis(view: OpView) -> Flow:
    arr, idx = view.bound("arr"), view.bound("indices")
    entries: list[tuple[Tensor, tuple[Axis, ...]]] = []
    if isinstance(arr, Tensor):
        ax = _axis(view.bound("axis"), arr.ndim)
        entries.append((arr, tuple(Mix("gathers positions of it") if j == ax else j
                                   for j in range(arr.ndim))))
    if isinstance(idx, Tensor):
        entries.append((idx, tuple(range(idx.ndim))))
    return _flow(entries)


def _one_hot(view: OpView) -> Flow:
    x, out = view.first_input(), _out(view)
    if x is None or out is None:
        return Flow()
    new = _axis(view.bound("axis", -1), out.ndim)
    assert new is not None
    return _flow([(x, tuple(a if a < new else a + 1 for a in range(x.ndim)))])


def _getitem(view: OpView) -> Flow:
    """Basic indexing keeps axes it slices whole (`:`); an int index reaches nothing when
    it is 0 (the first position is always a real one) and mixes otherwise."""
    x = view.bound("operand")
    if not isinstance(x, Tensor):
        return Flow()
    index = view.bound("index")
    items = list(index) if isinstance(index, tuple) else [index]
    arrays = [i for i in items if isinstance(i, Tensor)]
    ints = [i for i in items if isinstance(i, int) and not isinstance(i, bool)]
    if len(arrays) > 1 or (arrays and ints):  # numpy may move the broadcast axes first
        return _flow([_mixed(x, "reorders it (advanced indexing with several arrays)"),
                      *[_mixed(t, "uses it in an index array") for t in arrays]])
    n_used = sum(1 for i in items if i is not None and i is not Ellipsis)
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at:at + 1] = [slice(None)] * (x.ndim - n_used)
    items += [slice(None)] * (x.ndim - sum(1 for i in items if i is not None))
    mapping: list[Axis] = []
    entries: list[tuple[Tensor, tuple[Axis, ...]]] = []
    a, b = 0, 0
    for item in items:
        if item is None:
            b += 1
            continue
        if a >= x.ndim:
            break
        if isinstance(item, slice):
            start, stop, step = item.start, item.stop, item.step
            whole = (start in (None, 0) and (step in (None, 1))
                     and (stop is None or (isinstance(stop, int) and stop >= x.shape[a])))
            mapping.append(b if whole else Mix("moves or drops positions of it (a slice that "
                                               "does not keep it whole)"))
            b += 1
        elif isinstance(item, Tensor):
            mapping.append(Mix("indexes it with an array"))
            entries.append((item, tuple(b + j for j in range(item.ndim))))
            b += item.ndim
        elif isinstance(item, int):
            mapping.append(Mix("reads its first position", first=True) if item == 0 else Mix(
                "reads a position counted from the end, where the padding is" if item < 0
                else f"reads position {item}, which the padding may supply"))
        else:
            mapping.append(Mix("indexes it"))
        a += 1
    mapping += [Mix("indexes it")] * (x.ndim - len(mapping))
    return _flow([(x, tuple(mapping)), *entries], zeros="aligned", sizes=True)


def _asarray(view: OpView) -> Flow:
    out = _out(view)
    tensors = _unique(view.tensors())
    value = view.bound("a", view.bound("object"))
    if isinstance(value, Tensor):
        return _flow([(value, _aligned(value, out))], zeros="aligned")
    # a list of arrays stacks them on a new first axis
    return _flow([(t, tuple(a + (out.ndim - t.ndim if out is not None else 0)
                            for a in range(t.ndim))) for t in tensors], zeros="aligned")


# ------------------------------------------------------------- contractions


def _matmul_axes(a: Tensor, b: Tensor, out: Tensor | None,
                 ) -> list[tuple[Tensor, tuple[Axis, ...]]]:
    """`a @ b`: batch axes broadcast, rows of a and columns of b stay, k is contracted."""
    n = out.ndim if out is not None else 0
    k = Mix("contracts it (a matrix product)")

    def batch(t: Tensor, lead: int) -> list[Axis]:
        shift = n - 2 - lead
        return [j + shift if out is not None and j + shift >= 0
                and t.shape[j] == out.shape[j + shift] else None for j in range(lead)]

    if a.ndim == 1 and b.ndim == 1:
        return [(a, (k,)), (b, (k,))]
    if b.ndim == 1:  # out = a.shape[:-1]
        return [(a, (*range(a.ndim - 1), k)), (b, (k,))]
    if a.ndim == 1:  # out = b.shape[:-2] + b.shape[-1:]
        return [(a, (k,)), (b, (*range(b.ndim - 2), k, n - 1))]
    return [(a, (*batch(a, a.ndim - 2), n - 2, k)), (b, (*batch(b, b.ndim - 2), k, n - 1))]


def _matmul(view: OpView) -> Flow:
    a = view.bound("a", view.bound("left"))
    b = view.bound("b", view.bound("right"))
    tensors = [t for t in (a, b) if isinstance(t, Tensor)]
    if len(tensors) < 2:
        return _flow([_mixed(t, "contracts it") for t in tensors])
    return _flow(_matmul_axes(a, b, _out(view)))


def _dot(view: OpView) -> Flow:
    first, second = view.call.entry.signature.params[:2]  # a, b (jnp) or lhs, rhs (lax)
    a, b = view.bound(first.name), view.bound(second.name)
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
        return _elementwise()(view)
    if a.ndim == 0 or b.ndim == 0:
        return _elementwise()(view)
    k = Mix("contracts it (a dot product)")
    am = (*range(a.ndim - 1), k)
    if b.ndim == 1:
        bm: tuple[Axis, ...] = (k,)
    else:
        bm = (*(a.ndim - 1 + j for j in range(b.ndim - 2)), k, a.ndim - 1 + b.ndim - 2)
    return _flow([(a, tuple(am)), (b, bm)])


def _outer(view: OpView) -> Flow:
    a, b = view.bound("a"), view.bound("b")
    entries = []
    for t, at in ((a, 0), (b, 1)):
        if isinstance(t, Tensor):
            entries.append((t, (at,)) if t.ndim == 1 else _mixed(t, "flattens it (outer)"))
    return _flow(entries)


def _dot_general_axes(lhs: Tensor, rhs: Tensor | None, dims: Any,
                      ) -> list[tuple[Tensor, tuple[Axis, ...]]]:
    (lc, rc), (lb, rb) = dims
    lc, rc, lb, rb = (tuple(_axis(a, t.ndim) for a in axes) for axes, t in
                      ((lc, lhs), (rc, rhs or lhs), (lb, lhs), (rb, rhs or lhs)))
    k = Mix("contracts it")
    l_free = [a for a in range(lhs.ndim) if a not in lc and a not in lb]
    lm: list[Axis] = []
    for a in range(lhs.ndim):
        lm.append(k if a in lc else lb.index(a) if a in lb else len(lb) + l_free.index(a))
    out = [(lhs, tuple(lm))]
    if rhs is not None:
        r_free = [a for a in range(rhs.ndim) if a not in rc and a not in rb]
        rm: list[Axis] = []
        for a in range(rhs.ndim):
            rm.append(k if a in rc else rb.index(a) if a in rb
                      else len(lb) + len(l_free) + r_free.index(a))
        out.append((rhs, tuple(rm)))
    return out


def _dot_general(view: OpView) -> Flow:
    lhs, rhs = view.bound("lhs"), view.bound("rhs")
    if not isinstance(lhs, Tensor):
        return Flow()
    return _flow(_dot_general_axes(lhs, rhs if isinstance(rhs, Tensor) else None,
                                   view.bound("dimension_numbers")))


def _tensordot(view: OpView) -> Flow:
    a, b = view.bound("a"), view.bound("b")
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
        return _elementwise()(view)
    axes = view.bound("axes", 2)
    if isinstance(axes, int):
        ca, cb = list(range(a.ndim - axes, a.ndim)), list(range(axes))
    else:
        found_a = [_axis(x, a.ndim) for x in (axes[0] if isinstance(axes[0], (tuple, list))
                                              else (axes[0],))]
        found_b = [_axis(x, b.ndim) for x in (axes[1] if isinstance(axes[1], (tuple, list))
                                              else (axes[1],))]
        ca = [x for x in found_a if x is not None]
        cb = [x for x in found_b if x is not None]
        if len(ca) != len(found_a) or len(cb) != len(found_b):
            raise ValueError("tensordot: an axis out of range")  # flow(): every axis mixed
    return _flow(_dot_general_axes(a, b, ((ca, cb), ((), ()))))


def einsum_axes(subscripts: str, operands: Sequence[Tensor],
                ) -> list[tuple[Tensor, tuple[Axis, ...]]]:
    """Where the axes of einsum operands go: a label of the output stays, a label summed
    out mixes."""
    spec = subscripts.replace(" ", "")
    inputs, arrow, output = spec.partition("->")
    terms = inputs.split(",")
    n_ell = max((t.ndim - len(s.replace("...", "")) for s, t in zip(terms, operands)
                 if "..." in s), default=0)
    ell = "".join(chr(0x100 + i) for i in range(n_ell))

    def expand(term: str, rank: int) -> str:
        if "..." not in term:
            return term
        k = rank - len(term.replace("...", ""))
        return term.replace("...", ell[n_ell - k:] if k else "")

    ops = [expand(s, t.ndim) for s, t in zip(terms, operands)]
    if arrow:
        out = expand(output, len(output.replace("...", "")) + n_ell)
    else:
        counts: dict[str, int] = {}
        for labels in ops:
            for c in labels:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))
    entries = []
    for labels, t in zip(ops, operands):
        mapping: list[Axis] = []
        for c in labels:
            if c in out:
                mapping.append(out.index(c))
            else:
                mapping.append(Mix("sums it out (einsum)"))
        entries.append((t, tuple(mapping)))
    return entries


def _einsum(view: OpView) -> Flow:
    subscripts = view.bound("subscripts")
    operands = [t for t in (view.bound("operands") or ()) if isinstance(t, Tensor)]
    if not isinstance(subscripts, str) or len(operands) != len(view.bound("operands") or ()):
        return _flow([_mixed(t, "sums it out (einsum)") for t in _unique(view.tensors())])
    return _flow(einsum_axes(subscripts, operands))


def _top_k(view: OpView) -> Flow:
    x = view.first_input()
    if x is None:
        return Flow()
    return _flow([(x, tuple(range(x.ndim - 1)) + (Mix("sorts along it (top_k)"),))])


def _matrices(view: OpView) -> Flow:
    """A decomposition of each matrix (`jnp.linalg.qr`): the last two axes mix, batch axes stay."""
    x = view.first_input()
    if x is None:
        return Flow()
    why = "works on the matrices it spans (jnp.linalg)"
    flows = [(t, tuple(range(t.ndim - 2)) + (Mix(why), Mix(why)) if t.ndim >= 2
              else tuple(Mix(why) for _ in t.shape)) for t in _unique(view.tensors())]
    return _flow(flows)


def _every_axis(why: str) -> Callable[[OpView], Flow]:
    """Every axis of every input mixes (`why`): positions matter across the whole array."""
    return lambda view: _flow([_mixed(t, why) for t in _unique(view.tensors())])


def _resize(view: OpView) -> Flow:
    """`jax.image.resize`: an axis that keeps its size stays, a resized one mixes."""
    x = view.first_input()
    shape = view.bound("shape")
    if x is None or not isinstance(shape, (tuple, list)) or len(shape) != x.ndim:
        return Flow()
    return _flow([(x, tuple(i if shape[i] == d else Mix("interpolates along it (resize)")
                            for i, d in enumerate(x.shape)))])


MATRICES = AxisRule("per matrix: the last two axes mix, the leading (batch) axes stay",
                    _matrices)
def _broadcast_in_dim(view: OpView) -> Flow:
    """`lax.broadcast_in_dim`: input axis i goes to output axis `broadcast_dimensions[i]`
    (none where a size-1 axis is broadcast)."""
    x, out, dims = view.first_input(), _out(view), view.bound("broadcast_dimensions")
    if x is None or out is None or not isinstance(dims, (tuple, list)) or len(dims) != x.ndim:
        return Flow(sizes=True)
    return _flow([(x, tuple(None if x.shape[i] == 1 and out.shape[d] != 1 else d
                            for i, d in enumerate(dims)))], zeros="aligned", sizes=True)


def _lax_transpose(view: OpView) -> Flow:
    x, perm = view.first_input(), view.bound("permutation")
    if x is None or not isinstance(perm, (tuple, list)) or sorted(perm) != list(range(x.ndim)):
        return Flow()
    return _permute(view, list(perm))


def _window_axes(view: OpView) -> Flow:
    """`lax.reduce_window`: an axis whose window and stride are 1 stays (padding a size-1
    window adds nothing); the others mix."""
    x = view.first_input()
    dims, strides = view.bound("window_dimensions"), view.bound("window_strides")
    if x is None or not isinstance(dims, (tuple, list)) or len(dims) != x.ndim:
        return Flow()
    strides = strides if isinstance(strides, (tuple, list)) else (1,) * x.ndim
    return _flow([(x, tuple(i if dims[i] == 1 and strides[i] == 1 else
                            Mix("reduces windows along it (reduce_window)")
                            for i in range(x.ndim)))])


def _first_elementwise(view: OpView) -> Flow:
    """The first operand elementwise to the output, the others (tables) mixed whole."""
    x = view.first_input()
    if x is None:
        return Flow()
    return _flow([(x, tuple(range(x.ndim)))] + [
        _mixed(t, "is a lookup table") for t in _unique(view.tensors()) if t is not x])


ELEMENTWISE_FIRST = AxisRule("the first operand elementwise; the tables it reads mix",
                             _first_elementwise)
RESIZE = AxisRule("an axis that keeps its size stays, a resized axis mixes", _resize)
DIAGONAL = AxisRule("every axis mixes (a diagonal of two axes)",
                    _every_axis("takes a diagonal across it"))
GRID = AxisRule("every axis mixes (vectors spread over a grid)",
                _every_axis("spreads it over a grid (meshgrid)"))


# ------------------------------------------------------------- layer templates


def _literal(view: OpView, name: str) -> Any:
    try:
        return view.literal(name)
    except (ValueError, SyntaxError, KeyError):
        return None


def _in_layer_call(view: OpView) -> Flow:
    """`ops/call.j2` inside a layer: casts (`x.astype`), GroupNorm's grouping reshape,
    attention's combined masks (`jnp.logical_and`), the decode cache index."""
    text = "".join(p for p in view.args["call"].parts if isinstance(p, str))
    x, out = view.first_input(), _out(view)
    if x is None or out is None:
        return Flow(sizes=True)
    if ".reshape(" in text and x.shape != out.shape:
        return _flow([(x, reshape_axes(x.shape, out.shape))], zeros="aligned", sizes=True)
    return _flow([(t, _aligned(t, out)) for t in _unique(view.tensors())], zeros="aligned")


def _keep_last(why: str, arg: str) -> Callable[[OpView], Flow]:
    """Layers over the feature axis (Dense, LayerNorm): the last axis mixes."""
    def rule(view: OpView) -> Flow:
        x = view.arg(arg)
        main = (x, (*range(x.ndim - 1), Mix(why)))
        return _flow([main, *_others(view, x, main[1])])

    return rule


def _dense_general(view: OpView) -> Flow:
    x = view.arg("x")
    dims = _literal(view, "dims")
    if dims is None:
        return _flow([_mixed(x, "contracts it")])
    return _flow(_dot_general_axes(x, None, dims))


def _window(view: OpView, why: str, dims: Any, strides: Any, batch: int,
            spatial: int) -> Flow:
    """Conv and pooling: leading batch axes stay, a spatial axis stays only for a window
    and stride of 1, the feature axis mixes (contracted or pooled per feature)."""
    x = view.arg("x")
    mapping: list[Axis] = []
    for a in range(x.ndim):
        if a < batch:
            mapping.append(a)
        elif a < batch + spatial:
            k = dims[a - batch] if dims is not None and a - batch < len(dims) else None
            s = strides[a - batch] if strides is not None and a - batch < len(strides) else 1
            mapping.append(a if k == 1 and s in (1, None) else Mix(why))
        else:
            mapping.append(Mix("contracts it (the layer's features)"))
    return _flow([(x, tuple(mapping))])


def _conv(view: OpView) -> Flow:
    x = view.arg("x")
    kernel = view.bound("kernel_size")
    kernel = tuple(kernel) if isinstance(kernel, (tuple, list)) else (kernel,)
    strides = view.bound("strides")
    strides = tuple(strides) if isinstance(strides, (tuple, list)) else \
        (strides,) * len(kernel) if strides is not None else None
    batch = x.ndim - len(kernel) - 1
    return _window(view, "slides a convolution window along it", kernel, strides, batch,
                   len(kernel))


def _pool(view: OpView) -> Flow:
    x = view.arg("x")
    dims, strides = _literal(view, "dims"), _literal(view, "strides")
    if dims is None:
        return _flow([_mixed(x, "slides a pooling window along it")])
    # reduce_window dims cover every axis: 1 on batch and feature axes
    return _flow([(x, tuple(a if dims[a] == 1 and (strides is None or strides[a] == 1)
                            else Mix("slides a pooling window along it")
                            for a in range(x.ndim)))])


def _embed(view: OpView) -> Flow:
    x = view.arg("x")
    return _flow([(x, tuple(range(x.ndim)))])


def _batch_norm(view: OpView) -> Flow:
    axes = _literal(view, "axes")
    axes = set(axes if isinstance(axes, tuple) else (axes,)) if axes is not None else None
    why = ("normalizes with statistics over it (BatchNorm with use_running_average=False "
           "uses the batch's own statistics)")
    entries = []
    for t in _unique(view.tensors()):
        entries.append((t, tuple(Mix(why) if axes is None or a in axes else a
                                 for a in range(t.ndim))))
    return _flow(entries)


def _group_norm(view: OpView) -> Flow:
    why = "normalizes with statistics over it (GroupNorm: over every axis but the first)"
    entries = []
    for t in _unique(view.tensors()):
        axes: tuple[Axis, ...] = (0, *(Mix(why) for _ in t.shape[1:])) if t.ndim else ()
        entries.append((t, axes))
    return _flow(entries)


def _attention_keys(view: OpView) -> Keys:
    """How this attention call keeps queries off padded keys: causal, or its masks."""
    bound = view.call.args
    causal = bool(bound.get("causal_mask")) and not bool(bound.get("decode"))
    masks: list[tuple[Tensor, int]] = []
    mask = bound.get("mask")
    if isinstance(mask, Tensor) and mask.ndim:
        masks.append((mask, mask.ndim - 1))
    for name, key_name in (("padding_mask", "key_padding_mask"),):
        keyed = bound.get(key_name) if isinstance(bound.get(key_name), Tensor) \
            else bound.get(name)
        if isinstance(keyed, Tensor) and keyed.ndim:
            axis = keyed.ndim - 2 if keyed.shape[-1] == 1 and keyed.ndim > 1 else keyed.ndim - 1
            masks.append((keyed, axis))
    return Keys(causal=causal, masks=tuple(masks))


def _attention_weights(view: OpView) -> Flow:
    """`einsum("...qhd,...khd->...hqk", q, k)` into `[batch..., heads, q, k]`: batch, head,
    query and key positions stay, depth is contracted."""
    q, k = view.arg("query"), view.arg("key")
    n = q.ndim
    batch = tuple(range(n - 3))
    depth = Mix("contracts it (attention depth)")
    out = _out(view)
    rest = [(t, _aligned(t, out)) for t in _unique(view.tensors()) if t is not q and t is not k]
    return _flow([(q, (*batch, n - 2, n - 3, depth)), (k, (*batch, n - 1, n - 3, depth)),
                  *rest])


def _attention_softmax(view: OpView) -> Flow:
    w = view.arg("weights")
    keys = _attention_keys(view)
    return _flow([(w, (*range(w.ndim - 1), Mix("attends over it (softmax over keys)", keys)))])


def _attention_values(view: OpView) -> Flow:
    """`einsum("...hqk,...khd->...qhd", w, v)`: keys are summed out."""
    w, v = view.arg("weights"), view.arg("value")
    n = v.ndim
    batch = tuple(range(n - 3))
    keys = _attention_keys(view)
    mix = Mix("attends over it (the weighted sum over keys)", keys)
    return _flow([(w, (*batch, n - 2, n - 3, mix)), (v, (*batch, mix, n - 2, n - 1))])


def _attention_mask(view: OpView) -> Flow:
    out = _out(view)
    return _flow([(t, _aligned(t, out)) for t in _unique(view.tensors())], sizes=True)


def _pairwise_mask(view: OpView) -> Flow:
    """`fn(q[..., :, None], k[..., None, :])` reshaped to `(1,)*extra + batch + (1, lq, lk)`."""
    q, k, out = view.arg("q"), view.arg("k"), _out(view)
    assert out is not None
    n = out.ndim
    lead = n - 3 - (q.ndim - 1)

    def batch(t: Tensor) -> list[Axis]:
        return [lead + j if out.shape[lead + j] == t.shape[j] else None
                for j in range(t.ndim - 1)]

    fn = str(view.args["fn"].parts[0]) if view.args.get("fn") else ""
    product = fn in ("jnp.multiply", "jnp.logical_and", "jnp.bitwise_and")
    return _flow([(q, (*batch(q), n - 2)), (k, (*batch(k), n - 1))],
                 zeros="aligned" if product else "", sizes=True)


def _cache(view: OpView) -> Flow:
    """Decoding: the update lands at the cache index along the length axis."""
    entries = []
    for t in _unique(view.tensors()):
        entries.append((t, tuple(a if a < t.ndim - 3 else Mix("writes it at the cache index "
                                                               "(decoding)")
                                 for a in range(t.ndim))))
    return _flow(entries)


def _rnn_gate(view: OpView) -> Flow:
    """`fn(x @ W + h @ U)`: the batch axes stay, features are contracted."""
    entries = []
    for t in _unique(view.tensors()):
        entries.append((t, (*range(t.ndim - 1), Mix("contracts it (the cell's features)"))
                        if t.ndim else ()))
    return _flow(entries)


def _split_last(view: OpView) -> Flow:
    entries = []
    for t in _unique(view.tensors()):
        entries.append((t, (*range(t.ndim - 1), Mix("splits it")) if t.ndim else ()))
    return _flow(entries)


def _dropout(view: OpView) -> Flow:
    out = _out(view)
    return _flow([(t, _aligned(t, out)) for t in _unique(view.tensors())], random=True,
                 sizes=True)


def _layer_norm(view: OpView) -> Flow:
    return _keep_last("normalizes with statistics over it (the feature axis)",
                      "xf" if "xf" in view.args else "x")(view)


TEMPLATES: dict[str, AxisRule] = {
    "ops/call.j2": AxisRule("casts and reshapes inside layers keep axes; combined masks are "
                            "elementwise", _in_layer_call),
    "layers/dense.j2": AxisRule("the feature axis is contracted; the others stay",
                                _keep_last("contracts it (the layer's features)", "x")),
    "layers/dense_precise.j2": AxisRule("as Dense",
                                        _keep_last("contracts it (the layer's features)", "x")),
    "layers/dense_general.j2": AxisRule("as `lax.dot_general`", _dense_general),
    "layers/conv.j2": AxisRule("batch axes stay; a spatial axis stays only for a kernel and "
                               "stride of 1; features are contracted", _conv),
    "layers/conv_transpose.j2": AxisRule("as Conv", _conv),
    "layers/embed.j2": AxisRule("every index axis stays", _embed),
    "layers/embed_attend.j2": AxisRule("the feature axis is contracted",
                                       _keep_last("contracts it (the layer's features)", "q")),
    "layers/batch_norm.j2": AxisRule("the reduction axes mix (batch statistics)", _batch_norm),
    "layers/batch_norm_centered.j2": AxisRule("as batch_norm.j2", _batch_norm),
    "layers/batch_norm_eval.j2": AxisRule("elementwise (running statistics)",
                                          _elementwise()),
    "layers/layer_norm.j2": AxisRule("the feature axis mixes", _layer_norm),
    "layers/rms_norm.j2": AxisRule("the feature axis mixes", _layer_norm),
    "layers/group_norm.j2": AxisRule("every axis but the first mixes", _group_norm),
    "layers/group_norm_centered.j2": AxisRule("as group_norm.j2", _group_norm),
    "layers/max_pool.j2": AxisRule("an axis stays only for a window and stride of 1", _pool),
    "layers/avg_pool.j2": AxisRule("an axis stays only for a window and stride of 1", _pool),
    "layers/attention_weights.j2": AxisRule("batch, query and key positions stay; depth is "
                                            "contracted", _attention_weights),
    "layers/attention_mask.j2": AxisRule("elementwise", _attention_mask),
    "layers/attention_softmax.j2": AxisRule("mixes keys: safe when they are masked or causal",
                                            _attention_softmax),
    "layers/attention_dropout.j2": AxisRule("random numbers over the weights", _dropout),
    "layers/attention_values.j2": AxisRule("keys are summed out: safe when they are masked "
                                           "or causal", _attention_values),
    "layers/attention_cache.j2": AxisRule("the cache's length axis mixes", _cache),
    "layers/attention_cache_mask.j2": AxisRule("creates a mask of positions", _positions),
    "layers/attention_mask_pairwise.j2": AxisRule("query and key positions stay; a product "
                                                  "of masks is a mask", _pairwise_mask),
    "layers/causal_mask.j2": AxisRule("creates a causal mask",
                                      lambda v: Flow(zeros="causal", sizes=True,
                                                     positions=True)),
    "layers/dropout.j2": AxisRule("random numbers over the input's shape", _dropout),
    "layers/rnn_gate.j2": AxisRule("batch axes stay; features are contracted", _rnn_gate),
    "layers/lstm_memory.j2": AxisRule("elementwise", _elementwise()),
    "layers/lstm_hidden.j2": AxisRule("elementwise", _elementwise()),
    "layers/gru_candidate.j2": AxisRule("batch axes stay; features are contracted", _rnn_gate),
    "layers/gru_hidden.j2": AxisRule("elementwise", _elementwise()),
    "layers/conv_lstm_split.j2": AxisRule("splits the feature axis", _split_last),
    "layers/conv_lstm_memory.j2": AxisRule("elementwise", _elementwise()),
    "layers/zeros.j2": AxisRule("creates zeros", _create),
}


def _by_template(view: OpView) -> Flow:
    rule = TEMPLATES.get(view.template)
    if rule is None:
        raise KeyError(f"no axis rule for template {view.template} (add one to TEMPLATES in "
                       "aotflax/ops/axes.py)")
    return rule.fn(view)


#: Layers and functions with templates of their own: each statement by `TEMPLATES`.
BY_TEMPLATE = AxisRule("by the template of each statement (below)", _by_template)


def _stochastic_call(view: OpView) -> Flow:
    """`nn.dropout` / `nn.make_rng`: random bits, or a pass-through when deterministic."""
    if view.template != "ops/call.j2":
        return _by_template(view)
    text = "".join(p for p in view.args["call"].parts if isinstance(p, str))
    if "zeros_like" in text:
        return _create(view)
    return _flow([(t, _aligned(t, _out(view))) for t in _unique(view.tensors())])


# ------------------------------------------------------------- lax and jax.random


def _lax_pad(view: OpView) -> Flow:
    x = view.bound("operand")
    if not isinstance(x, Tensor):
        return Flow()
    config = view.bound("padding_config")
    return _flow([(x, tuple(a if tuple(config[a]) == (0, 0, 0) else Mix("pads it")
                            for a in range(x.ndim)))])


def _whole(x: Tensor, a: int, start: Any, size: Any, stride: Any = 1) -> bool:
    """A slice of axis `a` from `start` with `size` elements keeps it whole."""
    return start in (0, None) and size == x.shape[a] and stride in (1, None)


def _lax_slice(view: OpView) -> Flow:
    x = view.bound("operand")
    if not isinstance(x, Tensor):
        return Flow()
    starts, limits = view.bound("start_indices"), view.bound("limit_indices")
    strides = view.bound("strides") or (1,) * x.ndim
    return _flow([(x, tuple(a if _whole(x, a, starts[a], limits[a] - starts[a], strides[a])
                            else Mix("slices it") for a in range(x.ndim)))])


def _slice_in_dim(view: OpView) -> Flow:
    x = view.bound("operand")
    if not isinstance(x, Tensor):
        return Flow()
    ax = _axis(view.bound("axis", 0), x.ndim)
    start, limit = view.bound("start_index"), view.bound("limit_index")
    start = 0 if start is None else start
    limit = x.shape[ax] if limit is None and ax is not None else limit
    whole = ax is not None and _whole(x, ax, start, limit - start, view.bound("stride", 1))
    return _flow([(x, tuple(Mix("slices it") if a == ax and not whole else a
                            for a in range(x.ndim)))])


def _index_in_dim(view: OpView) -> Flow:
    """One position of an axis: index 0 reads a real position; any other may be padding."""
    x = view.bound("operand")
    if not isinstance(x, Tensor):
        return Flow()
    ax = _axis(view.bound("axis", 0), x.ndim)
    index = view.bound("index")
    keep = bool(view.bound("keepdims", True))
    first = isinstance(index, int) and not isinstance(index, bool) and index == 0
    mix = Mix("reads its first position", first=True) if first else Mix(
        "reads one position of it, which the padding may supply")
    mapping = tuple(mix if a == ax else a if keep or ax is None or a < ax else a - 1
                    for a in range(x.ndim))
    return _flow([(x, mapping), *[_mixed(t, "uses it as an index") for t in
                                  _unique(view.tensors()) if t is not x]])


def _dynamic_slice(view: OpView) -> Flow:
    """A slice as large as its axis starts at 0 (lax clamps the start): the axis stays."""
    x = view.bound("operand")
    if not isinstance(x, Tensor):
        return Flow()
    name = view.call.entry.name
    sizes = view.bound("slice_sizes")
    if name == "dynamic_slice_in_dim":
        ax = _axis(view.bound("axis", 0), x.ndim)
        sizes = tuple(view.bound("slice_size") if a == ax else x.shape[a] for a in range(x.ndim))
    mapping = tuple(a if sizes[a] == x.shape[a] else Mix("slices it at a dynamic position")
                    for a in range(x.ndim))
    return _flow([(x, mapping), *[_mixed(t, "uses it as a start index") for t in
                                  _unique(view.tensors()) if t is not x]])


def _dynamic_update(view: OpView) -> Flow:
    """An update as large as the operand along an axis lands at 0 (lax clamps the start)."""
    x, u = view.bound("operand"), view.bound("update")
    if not isinstance(x, Tensor):
        return Flow()
    entries: list[tuple[Tensor, tuple[Axis, ...]]] = []
    if isinstance(u, Tensor) and u.ndim == x.ndim:
        whole = [u.shape[a] == x.shape[a] for a in range(x.ndim)]
    else:
        whole = [False] * x.ndim
    why = "writes an update at a dynamic position along it"
    entries.append((x, tuple(a if whole[a] else Mix(why) for a in range(x.ndim))))
    if isinstance(u, Tensor):
        entries.append((u, tuple(a if a < len(whole) and whole[a] else Mix(why)
                                 for a in range(u.ndim))))
    entries += [_mixed(t, "uses it as a start index") for t in _unique(view.tensors())
                if t is not x and t is not u]
    return _flow(entries)


def _segment(view: OpView) -> Flow:
    """`segment_sum(data, ids)`: the segmented leading axes mix; the rest stay, after the
    new segment axis."""
    data, ids = view.bound("data"), view.bound("segment_ids")
    if not isinstance(data, Tensor):
        return Flow()
    k = ids.ndim if isinstance(ids, Tensor) else 1
    why = "sums or reduces positions of it into segments"
    axes: tuple[Axis, ...] = tuple(Mix(why) if a < k else a - k + 1 for a in range(data.ndim))
    entries = [(data, axes)]
    if isinstance(ids, Tensor):
        entries.append(_mixed(ids, "uses it as segment ids"))
    return _flow(entries)


def _lax_conv(view: OpView) -> Flow:
    """`lax.conv_general_dilated` / `conv_transpose`: the batch axis (`N`) stays; spatial
    axes slide a window and features are contracted, so they mix."""
    lhs, rhs = view.bound("lhs"), view.bound("rhs")
    numbers = view.bound("dimension_numbers")
    entries: list[tuple[Tensor, tuple[Axis, ...]]] = []
    if isinstance(lhs, Tensor):
        # the batch axis of the input and of the output (the rule checked the layouts)
        perms = sh.conv_permutations(lhs.ndim, numbers) if numbers else None
        n_in = perms[0][0] if perms else 0
        n_out = perms[2][0] if perms else 0
        if int(view.bound("batch_group_count", 1) or 1) != 1:
            entries.append(_mixed(lhs, "groups its batch positions (batch_group_count)"))
        else:
            entries.append((lhs, tuple(n_out if a == n_in else Mix(
                "slides a convolution window along it, or contracts it") for a in
                range(lhs.ndim))))
    if isinstance(rhs, Tensor):
        entries.append(_mixed(rhs, "is the convolution kernel"))
    return _flow(entries)


def _at_mapping(view: OpView) -> tuple[Tensor, tuple[Axis, ...], list[int]] | None:
    """`x.at[index]`: each axis of `x` with a whole slice or a non-negative int stays;
    the axes a slice keeps (the result's) are listed for the values."""
    x = view.bound("operand")
    index = view.bound("index")
    if not isinstance(x, Tensor):
        return None
    items = list(index) if isinstance(index, tuple) else [index]
    if any(i is None or isinstance(i, Tensor) for i in items):
        return x, tuple(Mix("updates positions of it chosen by an array") for _ in x.shape), []
    n_used = sum(1 for i in items if i is not Ellipsis)
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at:at + 1] = [slice(None)] * (x.ndim - n_used)
    items += [slice(None)] * (x.ndim - len(items))
    mapping: list[Axis] = []
    kept: list[int] = []
    for a, item in enumerate(items[:x.ndim]):
        if isinstance(item, slice):
            whole = item.start in (None, 0) and item.step in (None, 1) and (
                item.stop is None or (isinstance(item.stop, int) and item.stop >= x.shape[a]))
            mapping.append(a if whole else Mix("updates a slice of it"))
            kept.append(a)
        elif isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            # position k is written; past a request's size it lands in the padding
            mapping.append(a)
        else:
            mapping.append(Mix("updates a position counted from the end, where the padding is"))
    return x, tuple(mapping), kept


def _at_update(view: OpView) -> Flow:
    found = _at_mapping(view)
    if found is None:
        return Flow()
    x, mapping, kept = found
    entries: list[tuple[Tensor, tuple[Axis, ...]]] = [(x, mapping)]
    values = view.bound("values")
    for t in _unique(view.tensors()):
        if t is x:
            continue
        if t is values:  # broadcasts against the indexed part: axes align from the right
            shift = len(kept) - t.ndim
            entries.append((t, tuple(
                kept[a + shift] if a + shift >= 0 and isinstance(mapping[kept[a + shift]], int)
                and t.shape[a] == x.shape[kept[a + shift]] else
                None if t.shape[a] == 1 else Mix("writes it into a slice")
                for a in range(t.ndim))))
        else:
            entries.append(_mixed(t, "uses it in an index"))
    return _flow(entries)


def _key_data(view: OpView) -> Flow:
    x = view.first_input()
    return Flow() if x is None else _flow([(x, tuple(range(x.ndim)))])


def _wrap_key_data(view: OpView) -> Flow:
    x = view.first_input()
    if x is None:
        return Flow()
    return _flow([(x, (*range(x.ndim - 1), Mix("holds one key's data")) if x.ndim else ())])


def _categorical(view: OpView) -> Flow:
    logits = view.bound("logits")
    if not isinstance(logits, Tensor):
        return Flow(random=True, sizes=True)
    return _flow([_mixed(logits, "samples from it")], random=True, sizes=True)


def _shuffle(view: OpView) -> Flow:
    return _flow([_mixed(t, "shuffles or samples positions of it") for t in
                  _unique(view.tensors())], random=True, sizes=True)


def _keys(view: OpView) -> Flow:
    """New keys from keys: each key's axes stay (a split adds the `num` axis first)."""
    out = _out(view)
    return _flow([(t, _aligned(t, out)) for t in _unique(view.tensors())], sizes=True)


def _host(view: OpView) -> Flow:
    return _flow([_mixed(t, "computes with numpy on the host") for t in _unique(view.tensors())])


#: numpy calls (`ops/host.py`) compute constants on the host while JAX traces: no request's
#: positions reach them (a traced array cannot), so every axis of an input counts as mixed.
HOST = AxisRule("numpy on the host: a constant of the program (its inputs are constants too)",
                _host)


# ------------------------------------------------------------- the table


def _names(prefix: str, names: str) -> list[str]:
    return [f"{prefix}.{n}" for n in names.split()]


_ELEMENTWISE = (
    _names("jnp", "square sign floor ceil round rint trunc conjugate fix exp exp2 expm1 log "
           "log1p log2 log10 sqrt cbrt sin cos tan arcsin arccos arctan sinh cosh tanh arcsinh "
           "arccosh arctanh reciprocal deg2rad rad2deg sinc i0 isnan isinf isfinite "
           "logical_not signbit real imag angle invert bitwise_not add subtract maximum "
           "minimum power mod remainder floor_divide fmax fmin logical_or logical_xor "
           "bitwise_or bitwise_xor left_shift right_shift copysign hypot heaviside fmod divide "
           "true_divide arctan2 logaddexp float_power equal not_equal less less_equal greater "
           "greater_equal isclose where clip")
    + _names("jnp", "conj radians degrees logaddexp2 nextafter pow")
    + _names("lax", "rsqrt exp log tanh logistic erf erf_inv sqrt square sign floor ceil add "
             "sub div max min pow sin cos exp2 log1p expm1 cbrt erfc lgamma digamma round "
             "is_finite reciprocal bitwise_not population_count rem atan2 nextafter "
             "bitwise_or bitwise_xor eq ne lt le gt ge select")
    + _names("jax.scipy.special", "erf erfc erfinv gammaln digamma expit logit i0 i0e i1 "
             "i1e entr gamma xlogy xlog1py betaln gammainc gammaincc zeta rel_entr kl_div "
             "ndtr ndtri log_ndtr spence")
    + _names("jax.scipy.stats.norm", "pdf logpdf cdf logcdf sf logsf ppf isf")
    + _names("operator", "add sub truediv floordiv mod pow or xor lshift rshift eq ne lt le "
             "gt ge invert")
    + _names("array", "clip")
    + _names("nn", "relu relu6 elu celu selu gelu silu swish sigmoid log_sigmoid soft_sign "
             "softplus leaky_relu hard_tanh hard_sigmoid hard_silu hard_swish sparse_plus "
             "sparse_sigmoid squareplus mish tanh")
)
#: Zero stays zero: a mask multiplied, and-ed or cast is still a mask.
_PRODUCT = (
    _names("jnp", "negative positive abs absolute multiply logical_and bitwise_and astype")
    + _names("lax", "abs neg mul stop_gradient convert_element_type bitwise_and")
    + _names("operator", "mul and neg pos")
    + _names("array", "astype")
)
_REDUCE = (
    _names("jnp", "sum prod mean var std max min amax amin all any nanmean nansum median ptp "
           "argmax argmin")
    + _names("array", "sum prod mean var std max min all any argmax argmin")
    + ["jax.nn.logsumexp", "jax.scipy.special.logsumexp"]
)

RULES: dict[str, AxisRule] = {
    **{name: ELEMENTWISE for name in _ELEMENTWISE},
    **{name: PRODUCT for name in _PRODUCT},
    **{name: REDUCE for name in _REDUCE},
    **{name: RESHAPE for name in _names("jnp", "reshape ravel") + _names(
        "array", "reshape flatten ravel")},
    **{name: AxisRule("permutes axes", _transpose) for name in ("jnp.transpose",
                                                               "array.transpose")},
    **{name: AxisRule("swaps two axes", _swapaxes) for name in ("jnp.swapaxes",
                                                               "array.swapaxes")},
    "jnp.moveaxis": AxisRule("moves axes", _moveaxis),
    **{name: LAYOUT for name in ("jnp.expand_dims", "jnp.squeeze", "array.squeeze",
                                 "jnp.broadcast_to", "lax.broadcast")},
    "jnp.tile": AxisRule("a repeated axis mixes", _tile),
    **{name: AxisRule("the repeated axis mixes", _repeat) for name in ("jnp.repeat",
                                                                       "array.repeat")},
    "jnp.pad": AxisRule("a padded axis mixes", _pad),
    "jnp.flip": along("axis", None, "reverses it"),
    "jnp.roll": along("axis", None, "rolls it"),
    "jnp.cumsum": along("axis", None, "accumulates along it"),
    "jnp.concatenate": AxisRule("the concatenation axis mixes", _concatenate),
    "lax.concatenate": AxisRule("the concatenation axis mixes", _concatenate),
    "jnp.stack": AxisRule("every axis stays (a new one is inserted)", _stack),
    "jnp.vstack": AxisRule("the stacking axis mixes (a vector becomes a row)", _vstack),
    "jnp.hstack": AxisRule("the stacking axis mixes", _hstack),
    "jnp.diag": AxisRule("every axis mixes (a vector to a diagonal or back)", _diag),
    "jnp.split": AxisRule("the split axis mixes", _split),
    "jnp.matmul": AxisRule("batch and row/column axes stay; k is contracted", _matmul),
    "operator.matmul": AxisRule("as jnp.matmul", _matmul),
    "jnp.dot": AxisRule("the contracted axes mix", _dot),
    "lax.dot": AxisRule("as jnp.dot", _dot),
    "jnp.outer": AxisRule("each 1-D input's axis stays", _outer),
    "jnp.tensordot": AxisRule("the contracted axes mix", _tensordot),
    "jnp.einsum": AxisRule("output labels stay; summed labels mix", _einsum),
    "lax.dot_general": AxisRule("batch and free axes stay; contracted axes mix",
                                _dot_general),
    **{name: AxisRule("as its input (a copy or cast)", _asarray)
       for name in ("jnp.asarray", "jnp.array")},
    **{name: CREATE for name in _names("jnp", "zeros ones empty full zeros_like ones_like "
                                       "full_like")},
    **{name: POSITIONS for name in _names("jnp", "arange eye tri")},
    **{name: TRIANGLE for name in ("jnp.tril", "jnp.triu")},
    "jax.nn.one_hot": AxisRule("index axes stay; a class axis is inserted", _one_hot),
    "jnp.take": AxisRule("the gathered axis mixes; index axes stay", _take),
    "jnp.take_along_axis": AxisRule("the gathered axis mixes", _take_along_axis),
    "jnp.sort": along("axis", -1, "sorts along it"),
    "lax.sort_key_val": along("dimension", -1, "sorts along it"),
    "jnp.argsort": along("axis", -1, "sorts along it"),
    "lax.top_k": AxisRule("the last axis mixes", _top_k),
    "nn.softmax": along("axis", -1, "takes a softmax along it"),
    "nn.log_softmax": along("axis", -1, "takes a softmax along it"),
    "nn.standardize": along("axis", -1, "standardizes along it"),
    "nn.glu": along("axis", -1, "splits it in halves"),
    "operator.getitem": AxisRule("a whole slice keeps an axis; index 0 reads a real position; "
                                 "other indices mix", _getitem),
    **{name: RANDOM for name in _names(
        "jax.random", "normal uniform bernoulli gumbel exponential laplace logistic cauchy "
        "truncated_normal randint")},
    "jax.random.categorical": AxisRule("samples from the logits: their axes mix", _categorical),
    **{name: AxisRule("shuffles or samples positions: every axis mixes", _shuffle)
       for name in ("jax.random.permutation", "jax.random.choice")},
    **{name: CREATE for name in ("jax.random.key", "jax.random.PRNGKey")},
    **{name: AxisRule("new keys from keys: each key stays", _keys)
       for name in ("jax.random.split", "jax.random.fold_in")},
    "jax.random.key_data": AxisRule("every key axis stays; a data axis is added", _key_data),
    "jax.random.wrap_key_data": AxisRule("the key axes stay; the data axis mixes",
                                         _wrap_key_data),
    "jnp.cumprod": along("axis", None, "accumulates along it"),
    "jnp.linalg.norm": REDUCE,
    **{f"jnp.fft.{kind}": along("axis", -1, "transforms along it (an FFT)")
       for kind in ("fft", "ifft", "rfft", "irfft")},
    **{f"jnp.fft.{kind}2": along("axes", (-2, -1), "transforms along it (an FFT)")
       for kind in ("fft", "ifft", "rfft", "irfft")},
    **{f"jnp.fft.{kind}n": along("axes", None, "transforms along it (an FFT)")
       for kind in ("fft", "ifft", "rfft", "irfft")},
    **{f"jnp.fft.{name}": along("axes", None, "rolls along it")
       for name in ("fftshift", "ifftshift")},
    "jnp.linalg.qr": MATRICES,
    **{f"jnp.linalg.{name}": MATRICES for name in ("inv", "det", "slogdet", "cholesky",
                                                     "solve", "eigh", "svd")},
    **{f"jax.scipy.linalg.{name}": MATRICES for name in ("inv", "det", "cholesky", "solve",
                                                           "lu_factor", "lu_solve")},
    "jax.image.resize": RESIZE, "jnp.diagonal": DIAGONAL, "jnp.trace": DIAGONAL,
    "jnp.meshgrid": GRID, "jnp.count_nonzero": REDUCE, "jnp.nan_to_num": ELEMENTWISE,
    "jnp.identity": POSITIONS,
    "lax.reshape": RESHAPE, "lax.squeeze": LAYOUT, "lax.expand_dims": LAYOUT,
    "lax.transpose": AxisRule("permutes axes", _lax_transpose),
    "lax.broadcast_in_dim": AxisRule("each axis to the output axis it is broadcast to",
                                     _broadcast_in_dim),
    "lax.rev": along("dimensions", None, "reverses it"), "lax.iota": POSITIONS,
    "lax.full": CREATE, "lax.integer_pow": ELEMENTWISE, "lax.clamp": ELEMENTWISE,
    "lax.argmax": REDUCE, "lax.argmin": REDUCE,
    "lax.reduce_window": AxisRule("an axis with a window or stride of 1 (and no padding) "
                                  "stays, the others mix", lambda v: _window_axes(v)),
    "lax.sort": along("dimension", -1, "sorts along it"),
    "jnp.interp": ELEMENTWISE_FIRST, "jnp.digitize": ELEMENTWISE_FIRST,
    "jnp.cross": along("axis", -1, "takes a cross product along it"),
    "jnp.allclose": AxisRule("every axis mixes (one answer for all)",
                             _every_axis("is compared whole (allclose)")),
    "jnp.logspace": POSITIONS,
    "lax.batch_matmul": AxisRule("batch and row/column axes stay; k is contracted",
                                 lambda v: _flow(_matmul_axes(v.bound("lhs"), v.bound("rhs"),
                                                              _out(v)))),

    **{f"lax.{name}": along("axis", 0, "accumulates along it") for name in (
        "cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp")},
    "jnp.array_split": along("axis", 0, "splits it"), "jnp.select": ELEMENTWISE,
    **{name: AxisRule("every axis mixes", _every_axis(why)) for name, why in (
        ("jnp.searchsorted", "searches a sorted vector (searchsorted)"),
        ("jnp.quantile", "sorts along it (quantile)"), ("jnp.percentile", "sorts along it "
                                                        "(percentile)"),
        ("jnp.kron", "multiplies blocks across it (kron)"),
        ("jnp.atleast_1d", "reshapes it (atleast_1d)"), ("jnp.atleast_2d", "reshapes it "
                                                         "(atleast_2d)"),
        ("jnp.atleast_3d", "reshapes it (atleast_3d)"))},
    "jnp.linspace": LINSPACE,
    "lax.pad": AxisRule("a padded axis mixes", _lax_pad),
    "lax.slice": AxisRule("an axis sliced whole stays", _lax_slice),
    "lax.slice_in_dim": AxisRule("the axis stays when sliced whole", _slice_in_dim),
    **{name: AxisRule("the indexed axis mixes; index 0 reads a real position", _index_in_dim)
       for name in ("lax.index_in_dim", "lax.dynamic_index_in_dim")},
    **{name: AxisRule("an axis sliced whole stays", _dynamic_slice)
       for name in ("lax.dynamic_slice", "lax.dynamic_slice_in_dim")},
    **{name: AxisRule("an axis the update covers whole stays", _dynamic_update)
       for name in ("lax.dynamic_update_slice", "lax.dynamic_update_slice_in_dim",
                    "lax.dynamic_update_index_in_dim")},
    **{name: AxisRule("the segmented axes mix; the others stay", _segment)
       for name in _names("jax.ops", "segment_sum segment_max segment_min segment_prod")},
    **{name: AxisRule("the batch axis stays; spatial and feature axes mix", _lax_conv)
       for name in ("lax.conv_general_dilated", "lax.conv_transpose", "lax.conv",
                    "lax.conv_with_general_padding")},
    **{f"at.{name}": AxisRule("an axis indexed by a whole slice or a non-negative int "
                              "stays", _at_update)
       for name in "set add subtract multiply mul divide power min max".split()},
    "at.get": AxisRule("as indexing", _getitem),
    # emitted as the x.at[idx] call, whose rule applies
    **{name: AxisRule("as x.at[idx]", _at_update) for name in _names(
        "jax.ops", "index_update index_add index_mul index_min index_max")},
    "nn.make_rng": AxisRule("a key: no array input", _create),
    "nn.dropout": AxisRule("random numbers over the input (when not deterministic)",
                           _stochastic_call),
    **{name: BY_TEMPLATE for name in _names(
        "nn", "Dense Conv Embed LayerNorm max_pool avg_pool DenseGeneral ConvTranspose "
        "dot_product_attention make_causal_mask make_attention_mask "
        "MultiHeadDotProductAttention SelfAttention BatchNorm GroupNorm RMSNorm LSTMCell "
        "GRUCell ConvLSTM ConvLSTMCell")
       + ["nn.Embed.attend", "nn.attention.make_padding_mask",
          "nn.attention._make_causal_mask"]
       + [f"nn.{c}.initialize_carry" for c in ("LSTMCell", "GRUCell", "ConvLSTM",
                                                "ConvLSTMCell")]},
}

