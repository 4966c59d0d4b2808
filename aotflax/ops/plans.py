"""Shape plans: the part of a layer rule that depends only on its input's type and its
static arguments, worked out once per distinct set of them.

A model calls its layers many times with the same input shape and hyperparameters
(the two convolutions of a residual block, the training and evaluation targets of one
model).  What a rule derives from those alone (axes, output shapes and dtypes, the
options and code text of its template, the FLOP count) is the same every time; what it
does at the call site (declaring parameters and state under the instance's path, the
new output arrays, the emitted op) is not.  A rule with a plan splits itself in two:
`compute(call, x) -> plan`, pure, and the call-site part that reads the plan.

Soundness:

- the key is exact: the rule and entry, the input's shape, dtype and weak type, and
  each static argument the plan reads as its type and value (`exact_key`: floats by
  `repr`, so `-0.0` and `0.0` differ; `True` and `1` differ).  An argument of any
  other kind (an array, a size read from an array, a module, a closure) gives no
  key, and the rule runs as written;
- a plan is immutable data (strings, ints, tuples, frozen `Code`), shared by the calls
  of one key but never holding anything of a call (no array, no path, no span);
- errors are never cached: when `compute` raises, `lookup` gives None and the rule
  plans that call alone (`compute` again, uncached), which reports the error.  A rule
  has one implementation, its plan and its call-site part, whether or not the plan
  was cached; the checks left at the call site are those of the instance's scope and
  its initializers.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from ..program import Tensor
from ..values import DType
from .registry import CallError

P = TypeVar("P")

#: Plan and FLOP counts by key: the counts (by template) are what the first op of the key
#: counted.  A model has a few hundred keys; a long session is cleared now and then.
_PLANS: dict[tuple, tuple[Any, dict[str, int]]] = {}
_LIMIT = 1 << 14

#: Static values keyed by their own value, with their exact type.
_ATOMS = frozenset({int, bool, str, type(None)})


def exact_key(value: Any) -> Any:
    """A key equal only for values every rule treats alike: same types, same values
    (None: the value is not plain static data)."""
    t = type(value)
    if t in _ATOMS:
        return (t, value)
    if t is float or t is complex:
        return (t, repr(value))
    if t is tuple or t is list:
        items = []
        for v in value:
            k = exact_key(v)
            if k is None:
                return None
            items.append(k)
        return (t, tuple(items))
    if t is DType:
        return (t, value.name)
    return None


def lookup(call: Any, compute: Callable[[Any, Tensor], P], data: str,
           static: tuple[str, ...]) -> tuple[dict[str, int], P] | None:
    """(FLOP counts, plan) of `call`: `compute(call, x)` for the array argument `data` and
    the static arguments `static` (every argument the plan reads), once per key, and the
    FLOPs its ops counted by template (`flops`, `record_flops`), shared by the key's calls.

    **Returns:** None when the call has no key or `compute` reports an error: the caller
    then runs its rule as written.
    """
    x = call.args[data]
    if type(x) is not Tensor:  # a Python value becomes a constant op at the call site
        return None
    shape = x.shape
    for d in shape:
        if type(d) is not int:
            return None
    args = call.args
    parts: list[Any] = [compute, call.entry, shape, x.dtype, x.weak]
    for name in static:
        v = args[name]
        t = type(v)
        if t in _ATOMS:  # (type, value) pairs, flat: each argument gives two parts
            parts.append(t)
            parts.append(v)
            continue
        k = exact_key(v)
        if k is None:
            return None
        parts.append(t)
        parts.append(k)
    key = tuple(parts)
    found = _PLANS.get(key)
    if found is None:
        try:
            plan = compute(call, x)
        except CallError:
            return None
        if len(_PLANS) >= _LIMIT:
            _PLANS.clear()
        found = _PLANS[key] = (plan, {})
    return found[1], found[0]


def run(call: Any, compute: Callable[[Any, Tensor], P],
        at_call: Callable[[Any, Tensor, dict[str, int] | None, P], Tensor], data: str,
        static: tuple[str, ...]) -> Tensor:
    """A planned rule: `at_call(call, x, counts, plan)` with the cached plan of its key and
    its FLOP counts, or, without a key or when `compute` reports an error, with a plan of
    this call alone (computed again, which reports the error; `counts` None).  For a call planned alone a Python value
    becomes its (floating) constant op once, and the plan reads that array (`call.args`
    holds it)."""
    found = lookup(call, compute, data, static)
    if found is not None:
        return at_call(call, call.args[data], *found)
    x = call.tensor(data, floating=True)
    call.args[data] = x
    return at_call(call, x, None, compute(call, x))


def flops(counts: dict[str, int] | None, template: str) -> int | None:
    """FLOPs an op of `template` counted for this key before (None: not yet, or no key:
    a call planned alone has no `counts`)."""
    return None if counts is None else counts.get(template)


def record_flops(counts: dict[str, int] | None, template: str, count: int) -> None:
    if counts is not None:
        counts[template] = count


def clear() -> None:
    """Forget every plan (tests measuring the uncached path)."""
    _PLANS.clear()
