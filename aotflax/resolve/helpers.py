"""Helpers of the resolver that need no interpreter state."""

from __future__ import annotations

import builtins
import keyword
import operator
import string
from collections.abc import Sequence
from typing import Any

from .. import ir, quoting, safety, target_names
from ..ops.calls import value_code
from ..ops.registry import shorten as _shorten
from ..ops.stochastic import RngKey
from ..program import (
    Code,
    Tensor,
    TreeVar,
    fresh_like,
)
from ..scopes import (
    FunctionState,
    subscript_path,
)
from ..sizes import plain
from ..values import RecordTuple, is_static, numpy_scalar_name, shown
from .base import (
    MAX_STATIC_BITS,
    MAX_STATIC_LEN,
    MAX_UNROLL,
)

#: Longest emitted function name taken from a class or function name.
MAX_FUNCTION_STEM = 60

# ==================================================================== helpers

BINOP_NAMES = {"+": "add", "-": "sub", "*": "mul", "/": "truediv", "//": "floordiv",
                "%": "mod", "**": "pow", "@": "matmul", "&": "and", "|": "or", "^": "xor",
                "<<": "lshift", ">>": "rshift", "==": "eq", "!=": "ne", "<": "lt", "<=": "le",
                ">": "gt", ">=": "ge"}

STATIC_BINOPS = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "%": operator.mod, "**": operator.pow, "&": operator.and_,
    "|": operator.or_, "^": operator.xor, "<<": operator.lshift, ">>": operator.rshift,
    "@": operator.matmul, "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
STATIC_COMPARE = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge, "in": lambda a, b: a in b,
    "not in": lambda a, b: a not in b, "is": lambda a, b: a is b or a == b and a is None,
    "is not": lambda a, b: not (a is b or a == b and a is None),
}


#: Names a generated module already binds (imports, builtins, its own helpers).
TARGET_NAMES_TAKEN = frozenset(dir(builtins)) | {"jax", "jnp", "np", "optax", "TARGETS",
                                                 "_runtime"}

#: Names a state collection cannot take: collections are arguments of emitted functions,
#: next to `params` and `rng`, and must not shadow what those functions call.
NOT_COLLECTIONS = TARGET_NAMES_TAKEN | {"params", "rng", "self"}


#: Exact types that never are nor hold a key or a numpy array (`RngKey` and `HostArray`
#: are subclasses of `Tensor`, not `Tensor` itself): the leaves of most call arguments.
_PLAIN_LEAVES = frozenset({Tensor, int, float, bool, str, complex, type(None)})


def holds(value: Any, kind: type) -> bool:
    """Whether a value is, or contains (in lists, tuples and dicts), an instance of
    `kind` (a random key, a numpy array: never one of the plain leaf types)."""
    if type(value) in _PLAIN_LEAVES:
        return False
    if isinstance(value, kind):
        return True
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, (tuple, list)):
        return False
    for v in value:  # a loop, not any(): the common leaves return without a generator
        if type(v) not in _PLAIN_LEAVES and holds(v, kind):
            return True
    return False


def has_key(value: Any) -> bool:
    """Whether a value is, or contains, a random key."""
    return holds(value, RngKey)


def tuple_code(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"




def is_too_big(op: str, left: Any, right: Any) -> str | None:
    """Describe a static operation whose result would be huge (or take forever), else None."""
    ints = all(isinstance(v, int) for v in (left, right))
    if op == "**" and ints and right > 0 and abs(left) > 1 and \
            right * abs(left).bit_length() > MAX_STATIC_BITS:
        return f"{shown(left)} ** {shown(right)}"
    if op == "<<" and ints and right > MAX_STATIC_BITS:
        return f"{shown(left)} << {shown(right)}"
    if op == "%" and isinstance(left, str) and ("*" in left or safety.spec_problem(left)):
        return f"{left!r} % ..."
    if op == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and \
                    len(seq) * n > MAX_STATIC_LEN:
                return f"{type(seq).__name__} of {len(seq)} * {n}"
    return None


def range_too_long(args: list) -> bool:
    if not all(isinstance(a, int) for a in args) or not 1 <= len(args) <= 3 or \
            (len(args) == 3 and args[2] == 0):
        return False  # range() reports its own error
    r = range(*args)
    return (r.stop - r.start) // (r.step or 1) > MAX_UNROLL


def array_like(v: Any) -> bool:
    return isinstance(v, (Tensor, int, float, complex, bool)) or numpy_scalar_name(v) is not None


def shorten(v: Any) -> str:
    return _shorten(v)


def tensor_leaves(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in tensor_leaves(v)]
    return [value]


def rebuild(template: Any, leaves: list[Tensor]) -> Any:
    """`template`'s tuple/list structure with its tensor leaves replaced in order."""
    it = iter(leaves)

    def go(v: Any) -> Any:
        if isinstance(v, Tensor):
            return next(it)
        if isinstance(v, RecordTuple):  # a namedtuple keeps its field names
            return RecordTuple.make(v.cls, [go(x) for x in v])
        if isinstance(v, tuple):
            return tuple(go(x) for x in v)
        if isinstance(v, list):
            return [go(x) for x in v]
        return v

    return go(template)


def tensors(value: Any) -> list[Tensor]:
    return [v for v in tensor_leaves(value) if isinstance(v, Tensor)]


def tree_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """(path, leaf) of every leaf of nested tuples, lists and dicts, in the order written
    (a dict by insertion: the order a reader of the model sees); a path is tuple indices
    and dict keys."""
    if not isinstance(value, (tuple, list, dict)):
        return [(path, value)]
    items = value.items() if isinstance(value, dict) else enumerate(value)
    return [p for k, v in items for p in tree_paths(v, (*path, k))]


def rebuild_tree(template: Any, leaves: list[Tensor]) -> Any:
    """`template` (tuples, lists, dicts) with its tensor leaves replaced in `tree_paths`
    order; other leaves (static values) stay."""
    it = iter(leaves)

    def go(v: Any) -> Any:
        if isinstance(v, Tensor):
            return next(it)
        if isinstance(v, dict):
            return {k: go(x) for k, x in v.items()}
        if isinstance(v, RecordTuple):  # a namedtuple keeps its field names
            return RecordTuple.make(v.cls, [go(x) for x in v])
        if isinstance(v, (tuple, list)):
            items = [go(x) for x in v]
            return tuple(items) if isinstance(v, tuple) else items
        return v

    return go(template)


def holds_dict(value: Any) -> bool:
    """Whether nested tuples and lists hold a dict."""
    if isinstance(value, dict):
        return True
    return isinstance(value, (tuple, list)) and any(holds_dict(v) for v in value)


def read_code(var: Any, path: tuple[Any, ...]) -> Code:
    """`var["tokens"][0]`: one leaf of a tree bound to `var`, its keys quoted as data."""
    return Code.of(var, *(f"[{quoting.literal(k)}]" for k in path))


def fresh_name(value: Any, fn: FunctionState, name: str) -> Any:
    """A function parameter for an argument: tensors become fresh input tensors."""
    if isinstance(value, Tensor):
        t = fresh_like(value)
        fn.hint(t, name)
        return t
    return value


def result_leaves(value: Any) -> list[Any]:
    """The leaves of a module's result in JAX's order: tuples and lists item by item,
    dicts by sorted key (as `jax.tree.leaves` flattens them)."""
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in result_leaves(v)]
    if isinstance(value, dict):
        return [x for k in sorted(value) for x in result_leaves(value[k])]
    return [value]


def result_tensors(value: Any) -> list[Tensor]:
    """The arrays of a module's result, in JAX's order (`result_leaves`)."""
    return [v for v in result_leaves(value) if isinstance(v, Tensor)]


def tensor_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Tensor]]:
    """(path, array) of each array of a result, a path being tuple indices and dict keys,
    in JAX's order."""
    if isinstance(value, Tensor):
        return [(path, value)]
    if isinstance(value, (tuple, list)):
        return [p for i, v in enumerate(value) for p in tensor_paths(v, (*path, i))]
    if isinstance(value, dict):
        return [p for k in sorted(value) for p in tensor_paths(value[k], (*path, k))]
    return []


def holds_array_dict(value: Any) -> bool:
    """Whether a result holds a dict with arrays in it (`{"logits": y}`)."""
    if isinstance(value, (tuple, list)):
        return any(holds_array_dict(v) for v in value)
    return isinstance(value, dict) and not is_static(value)


def copy_result(value: Any, fn: FunctionState) -> Any:
    """A module's result as its caller sees it: fresh arrays, and the static values it
    returned (a size read in the callee is a plain int in the caller)."""
    if isinstance(value, Tensor):
        return fresh_like(value)
    if isinstance(value, RecordTuple):
        return RecordTuple.make(value.cls, [copy_result(v, fn) for v in value])
    if isinstance(value, tuple):
        return tuple(copy_result(v, fn) for v in value)
    if isinstance(value, list):
        return [copy_result(v, fn) for v in value]
    if isinstance(value, dict) and not is_static(value):
        return {k: copy_result(v, fn) for k, v in value.items()}
    return plain(value)


def result_code_of(value: Any, fn: FunctionState) -> tuple[Code, list[Tensor]]:
    leaves = result_tensors(value)
    return value_code(value), leaves


def unpack_code(template: Any, result: Any, new_state: Sequence[TreeVar | None]) -> Code:
    """Assignment target for a module call: `y`, `a, b`, `y, new_batch_stats` (`_` for a
    collection the call returns unchanged: None in `new_state`)."""
    main = _target_code(result)
    if not new_state:
        return main
    return Code.join(", ", [main] + [Code((s if s is not None else "_",)) for s in new_state])


def _target_code(v: Any) -> Code:
    """The target unpacking one returned value (`_` where nothing is an array).

    A module-level function, not a closure: a recursive closure is a reference cycle
    (function -> cell -> function), garbage for the cyclic collector after every call."""
    if isinstance(v, (Tensor, TreeVar)):  # a TreeVar: a result bound whole
        return Code((v,))
    if isinstance(v, (tuple, list)):
        inner = Code.join(", ", [_target_code(x) for x in v])
        return Code.of("(", inner, ",)" if len(v) == 1 else ")")
    return Code(("_",))


def state_result_of(fn: FunctionState) -> tuple[tuple[str, Code], ...]:
    """For each collection, a nested dict display of the current state values: a subtree
    in which nothing changed is the one given (`batch_stats["bn_init"]`), a collection in
    which nothing changed is the argument itself."""
    out = []
    for coll in fn.collections:
        tree: dict[str, Any] = {}
        # every prefix of a changed path: the subtrees in which something changed
        changed = {path[:i] for c, path in fn.state_values if c == coll
                   for i in range(1, len(path) + 1)}
        if not changed:
            out.append((coll, Code((coll,))))  # nothing changed: the state it was given
            continue
        for c, path in fn.state:
            if c != coll:
                continue
            value = None
            # the longest prefix with a value (a submodule subtree) wins over leaves
            for i in range(1, len(path) + 1):
                if (c, path[:i]) in fn.state_values:
                    value = (path[:i], fn.state_values[(c, path[:i])])
                    break
            if value is None:  # the largest subtree around it in which nothing changed
                i = next((i for i in range(1, len(path) + 1) if path[:i] not in changed),
                         len(path))
                value = (path[:i], Code((subscript_path(coll, path[:i]),)))
            node = tree
            p, v = value
            for part in p[:-1]:
                node = node.setdefault(part, {})
            node[p[-1]] = v
        out.append((coll, _dict_code(tree)))
    return tuple(out)


def _dict_code(tree: dict[str, Any]) -> Code:
    items = []
    for k, v in tree.items():
        if isinstance(v, dict):
            inner = _dict_code(v)
        elif isinstance(v, Code):
            inner = v
        else:
            inner = Code((v,))
        items.append(Code.of(f"{quoting.string(k)}: ", inner))
    return Code.of("{", Code.join(", ", items), "}")


def assigned_names(stmt: ir.Stmt | ir.ClassDef) -> list[str]:
    def names(t: ir.Expr) -> list[str]:
        if isinstance(t, ir.Name):
            return [t.id]
        if isinstance(t, (ir.TupleExpr, ir.ListExpr)):
            return [n for e in t.elts for n in names(e)]
        if isinstance(t, ir.Starred):
            return names(t.value)
        return []

    if isinstance(stmt, ir.Assign):
        return [n for t in stmt.targets for n in names(t)]
    if isinstance(stmt, (ir.AugAssign, ir.AnnAssign)):
        return names(stmt.target)
    if isinstance(stmt, ir.For):  # the loop variable and what the body assigns
        return names(stmt.target) + [n for s in (*stmt.body, *stmt.orelse)
                                     for n in assigned_names(s)]
    if isinstance(stmt, (ir.If, ir.While)):  # a failed condition: both blocks' names unknown
        return [n for s in (*stmt.body, *stmt.orelse) for n in assigned_names(s)]
    if isinstance(stmt, ir.With):
        return [n for s in stmt.body for n in assigned_names(s)]
    if isinstance(stmt, (ir.FunctionDef, ir.ClassDef)):
        return [stmt.name]  # a def that failed (decorators, defaults) is not "undefined"
    if isinstance(stmt, ir.Import):
        return [stmt.alias]
    if isinstance(stmt, ir.Unsupported):
        return list(stmt.binds)
    return []


#: Names an emitted function never takes: what generated modules and their functions bind.
_FUNCTION_NAMES_TAKEN = TARGET_NAMES_TAKEN | frozenset(keyword.kwlist) | \
    target_names.TEMPLATE_LOCALS | {"self"}


def function_stem(name: str) -> str:
    """An ASCII identifier from a DSL name, for an emitted function (cut when long)."""
    stem = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_"
                   for c in name[:MAX_FUNCTION_STEM]) or "fn"
    return stem if not stem[0].isdigit() else "fn_" + stem


def function_names_taken(targets: list) -> set[str]:
    """Module-level names of a generated module other than its emitted functions."""
    taken = set(_FUNCTION_NAMES_TAKEN)
    for t in targets:
        taken.update(target_names.target_globals(t.name))
    return taken


# ==================================================================== size limits

#: Build-time steps an operation of the generated code costs (emitting and verifying one
#: takes some 0.2 ms, a statement of the model a few microseconds): at most
#: `MAX_STEPS / STEPS_PER_OP` ops per file, 50,000, some 15 s of emit and verify.
STEPS_PER_OP = 40

#: Build-time steps charged per unit a static operation reads or builds (a character,
#: an item, a 64-bit limb of an int): big static values spend the step budget.
WORK_PER_STEP = 8


def static_truth(value: Any) -> bool | None:
    """`bool(value)` where the build knows it, else None (an array's truth is its data).

    A tuple, list or dict is true when it has items, whatever they are, as in Python:
    `if mask_components:` over a list of masks is static.
    """
    if isinstance(value, (tuple, list, dict)):
        return len(value) > 0
    if is_static(value):
        return bool(value)
    return None


def static_size(value: Any) -> int:
    """Shallow size of a static value: characters, items (a dict entry weighs 4) or
    64-bit limbs of an int; about 8 bytes a unit."""
    if isinstance(value, (str, list, tuple)):
        return len(value)
    if isinstance(value, dict):
        return 4 * len(value)
    if isinstance(value, int):
        return value.bit_length() >> 6
    return 0


def too_large(value: Any) -> str | None:
    """Describe a static value over the size limits (`MAX_STATIC_*`), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and \
            value.bit_length() > MAX_STATIC_BITS:
        return f"an int of {value.bit_length():,} bits (at most {MAX_STATIC_BITS:,})"
    if isinstance(value, (str, list, tuple, dict)) and len(value) > MAX_STATIC_LEN:
        unit = "characters" if isinstance(value, str) else "items"
        return (f"a {type(value).__name__} of {len(value):,} {unit} (at most "
                f"{MAX_STATIC_LEN:,})")
    return None


def deep_size(value: Any, limit: int = MAX_STATIC_LEN) -> int:
    """Units in `value` counted through nested containers, shared ones each time they
    occur; stops counting once past `limit` (so a self-containing list ends too)."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        v = stack.pop()
        total += static_size(v) + 1
        if isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v)
            stack.extend(v.values())
    return total


def format_nested(fmt: str) -> bool:
    """Whether `fmt.format(...)` has a replacement field inside a format spec (`{:{}}`),
    whose width would come from an argument no size check sees."""
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return False  # str.format reports malformed strings itself
    return any(spec and "{" in spec for _, _, spec, _ in parsed)


def replace_size(s: str, old: str, new: str, count: int = -1) -> int:
    """Length of `s.replace(old, new, count)`, computed without building it."""
    n = s.count(old) if old else len(s) + 1
    if count is not None and count >= 0:
        n = min(n, count)
    return len(s) + n * (len(new) - len(old))
