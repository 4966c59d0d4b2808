"""chex's shape and type assertions, checked at build time.

Research code of 2021 checked its shapes with chex (`chex.assert_shape(x, (b, n, 3))`,
`chex.assert_rank(x, 4)`, `chex.assert_equal_shape([a, b])`).  Shapes are static here,
so each assertion is decided while resolving: a failed one is a located error (AOT300,
as a failed `assert`) and a passing one emits nothing, as chex's checks ran while JAX
traced and never reached the compiled program.  chex itself is never imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import dtypes as dt
from ..diagnostics import Span
from ..program import Tensor
from ..values import DType, StaticBuiltin, describe_value

if TYPE_CHECKING:
    from .core import Resolver

#: The assertions the static language implements: their parameters.
CHEX_ASSERTIONS = {
    "assert_shape": ("inputs", "expected_shapes"),
    "assert_rank": ("inputs", "expected_ranks"),
    "assert_equal_shape": ("inputs",),
    "assert_equal_rank": ("inputs",),
    "assert_axis_dimension": ("tensor", "axis", "expected"),
    "assert_type": ("inputs", "expected_types"),
}
#: chex's `assert_type` compares kinds: numpy's kind letters of each class it tells apart.
_TYPE_KINDS = {"f": ("floating", "f"), "i": ("integer", "iu"), "u": ("integer", "iu"),
               "b": ("bool", "b")}


class ChexMixin:
    """`chex.assert_*` on arrays: decided from their static shapes."""

    def _chex(self: Resolver, name: str, args: list, kwargs: dict, span: Span) -> None:
        written = f"chex.{name}"
        params = CHEX_ASSERTIONS[name]
        extra = set(kwargs) - set(params) - {"custom_message"}
        if len(args) > len(params) or extra:
            raise self.error("AOT304", f"{written} takes ({', '.join(params)})", span)
        bound = dict(zip(params, args)) | kwargs
        missing = [p for p in params if p not in bound]
        if missing:
            raise self.error("AOT301", f"{written} needs {', '.join(missing)}", span)
        note = bound.get("custom_message")
        if name == "assert_type":
            self._chex_type(written, bound["inputs"], bound["expected_types"], note, span)
            return
        arrays = self._chex_arrays(written, bound[params[0]], span)

        def fail(message: str) -> None:
            text = f"{message}: {note}" if isinstance(note, str) else message
            raise self.error("AOT300", f"model assertion failed: {written}: {text}", span)

        if name == "assert_shape":
            expected = bound["expected_shapes"]
            many = isinstance(expected, list) or (isinstance(expected, tuple) and expected
                                                  and isinstance(expected[0], (tuple, list)))
            shapes = list(expected) if many else [expected] * len(arrays)
            if len(shapes) != len(arrays):
                fail(f"{len(arrays)} inputs for {len(shapes)} expected shapes")
            for i, (a, want) in enumerate(zip(arrays, shapes)):
                if not _shape_matches(a.shape, want, self, written, span):
                    fail(f"input {i} has shape {a.shape}, expected {_shown(want)}")
        elif name == "assert_rank":
            want = bound["expected_ranks"]
            ranks = list(want) if isinstance(want, list) else [want] * len(arrays)
            if len(ranks) != len(arrays):
                fail(f"{len(arrays)} inputs for {len(ranks)} expected ranks")
            for i, (a, r) in enumerate(zip(arrays, ranks)):
                allowed = set(r) if isinstance(r, (set, frozenset, tuple)) else {r}
                if any(isinstance(k, bool) or not isinstance(k, int) for k in allowed):
                    raise self.error("AOT203", f"{written}: expected ranks are ints (or sets "
                                     f"of ints), got {describe_value(r)}", span)
                if a.ndim not in allowed:
                    fail(f"input {i} has rank {a.ndim}, expected {_shown(r)}")
        elif name in ("assert_equal_shape", "assert_equal_rank"):
            got = [a.shape if name == "assert_equal_shape" else a.ndim for a in arrays]
            if len(set(got)) > 1:
                fail(f"the inputs have {'shapes' if name == 'assert_equal_shape' else 'ranks'} "
                     + ", ".join(map(str, got)))
        else:  # assert_axis_dimension
            axis, expected = bound["axis"], bound["expected"]
            a = arrays[0]
            if isinstance(axis, bool) or not isinstance(axis, int) or not -a.ndim <= axis < a.ndim:
                fail(f"axis {describe_value(axis)} is out of range for {a.describe()}")
            if a.shape[axis] != expected:
                fail(f"axis {axis} of {a.describe()} has size {a.shape[axis]}, expected "
                     f"{_shown(expected)}")

    def _chex_type(self: Resolver, written: str, inputs: Any, expected: Any, note: Any,
                   span: Span) -> None:
        """`chex.assert_type(x, jnp.float32)`: as chex checks it, whether each input's dtype
        is of the expected type's kind (floating, integer or bool), not the type itself."""
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        wants = list(expected) if isinstance(expected, (list, tuple)) else \
            [expected] * len(items)
        if len(wants) != len(items):
            raise self.error("AOT300", f"model assertion failed: {written}: {len(items)} "
                             f"inputs for {len(wants)} expected types", span)
        for i, (x, want) in enumerate(zip(items, wants)):
            name = _dtype_name(want)
            if name is None or dt.kind(name) not in _TYPE_KINDS:
                raise self.error("AOT203", f"{written}: an expected type is a float, int or "
                                 f"bool dtype (jnp.float32, int, ...), got "
                                 f"{describe_value(want)}", span)
            if isinstance(x, Tensor):
                got = x.dtype
            elif isinstance(x, (bool, int, float)):
                got = {bool: "bool", int: "int32", float: "float32"}[type(x)]
            else:
                raise self.error("AOT201", f"{written} checks arrays, got {describe_value(x)}",
                                 span)
            parent, kinds = _TYPE_KINDS[dt.kind(name)]
            if dt.kind(got) not in kinds:
                text = f"input {i} has dtype {got}, expected a {parent} type ({name})"
                text = f"{text}: {note}" if isinstance(note, str) else text
                raise self.error("AOT300", f"model assertion failed: {written}: {text}", span)

    def _chex_arrays(self: Resolver, written: str, value: Any, span: Span) -> list[Tensor]:
        arrays = list(value) if isinstance(value, (list, tuple)) else [value]
        for a in arrays:
            if not isinstance(a, Tensor):
                raise self.error("AOT201", f"{written} checks arrays, got "
                                 f"{describe_value(a)}", span)
        return arrays


def _dtype_name(value: Any) -> str | None:
    """The dtype `chex.assert_type` is given: `jnp.float32`, a name, `float`/`int`/`bool`."""
    if isinstance(value, DType):
        return value.name
    if isinstance(value, str) and value in dt.ALL_DTYPES:
        return value
    if isinstance(value, StaticBuiltin) and value.name in ("float", "int", "bool"):
        return {"float": "float32", "int": "int32", "bool": "bool"}[value.name]
    return None


def _shape_matches(shape: tuple[int, ...], want: Any, resolver: Any, written: str,
                   span: Span) -> bool:
    """chex's shape patterns: ints, None (any size) and sets of sizes; `...` any axes."""
    if not isinstance(want, (tuple, list)):
        raise resolver.error("AOT203", f"{written}: an expected shape is a tuple, got "
                             f"{describe_value(want)}", span)
    want = list(want)
    if Ellipsis in want:
        i = want.index(Ellipsis)
        head, tail = want[:i], want[i + 1:]
        if len(shape) < len(head) + len(tail):
            return False
        return _shape_matches(shape[:len(head)], head, resolver, written, span) and \
            _shape_matches(shape[len(shape) - len(tail):], tail, resolver, written, span)
    if len(shape) != len(want):
        return False
    for d, w in zip(shape, want):
        if w is None:
            continue
        allowed = set(w) if isinstance(w, (set, frozenset)) else {w}
        if any(isinstance(k, bool) or not isinstance(k, int) for k in allowed):
            raise resolver.error("AOT203", f"{written}: shape entries are ints, None or sets "
                                 f"of ints, got {describe_value(w)}", span)
        if d not in allowed:
            return False
    return True


def _shown(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join("..." if v is Ellipsis else _shown(v) for v in value) + \
            ("," if len(value) == 1 else "") + ")"
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(map(str, sorted(value))) + "}"
    return str(value)


__all__ = ["CHEX_ASSERTIONS", "ChexMixin"]
