"""Static sizes that remember where they were read.

`x.shape`, `x.shape[i]`, `x.ndim` and `x.size` are build-time ints, but
generated code should read them from the array, as a person writes it:
`x.reshape((x.shape[0], -1))`, not `x.reshape((8, -1))`.  So the interpreter
hands out a `Size` (an `int`) or a `SizeTuple` (a `tuple`) that also carries
the code reading it from a variable of the function being resolved;
arithmetic on them keeps that code (`x.shape[-1] * 4`), and `value_code`
writes it where the value reaches generated code.  Everywhere else they are
the ints and tuples they equal: comparisons, hashing, loops, messages.

Provenance never crosses a function boundary: a hyperparameter handed to a
module is made `plain` first (the module's function has no `x` to read it
from), as are specialization keys and parameter shapes.  Should one reach
another function anyway (in a closure), emit renders the literal instead
(`SizeRef`), so the code stays right, only less general.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from .program import Code, Fragment, Var
from .quoting import literal

#: Precedence of a size's code, to parenthesize it only where Python needs it.
ATOM, POWER, UNARY, PRODUCT, SUM = 10, 8, 7, 6, 5
#: Longer code than this is not worth reading: the size becomes a plain int.
MAX_CODE = 120


class Size(int):
    """An int with the code that computes it from the current function's variables."""

    code: Code
    prec: int

    def __new__(cls, value: int, code: Code, prec: int = ATOM) -> "Size":
        self = int.__new__(cls, value)
        self.code, self.prec = code, prec
        return self

    def __reduce__(self) -> Any:  # copies are plain ints (provenance is per resolution)
        return (int, (int(self),))

    def _arith(self, other: Any, op: str, prec: int, value: Any, right: bool = False) -> Any:
        if not isinstance(value, int) or isinstance(value, bool) or isinstance(other, bool):
            return value
        mine = _operand(self, prec, right)
        theirs = _operand(other, prec, not right)
        if theirs is None:
            return value
        parts = (theirs, f" {op} ", mine) if right else (mine, f" {op} ", theirs)
        return sized(value, Code.of(*parts), prec)

    def __add__(self, other: Any) -> Any:
        return self._arith(other, "+", SUM, int.__add__(self, other))

    def __radd__(self, other: Any) -> Any:
        return self._arith(other, "+", SUM, int.__radd__(self, other), right=True)

    def __sub__(self, other: Any) -> Any:
        return self._arith(other, "-", SUM, int.__sub__(self, other))

    def __rsub__(self, other: Any) -> Any:
        return self._arith(other, "-", SUM, int.__rsub__(self, other), right=True)

    def __mul__(self, other: Any) -> Any:
        if isinstance(other, (tuple, list, str)):
            return other * int(self)
        return self._arith(other, "*", PRODUCT, int.__mul__(self, other))

    def __rmul__(self, other: Any) -> Any:
        if isinstance(other, (tuple, list, str)):
            return other * int(self)
        return self._arith(other, "*", PRODUCT, int.__rmul__(self, other), right=True)

    def __floordiv__(self, other: Any) -> Any:
        return self._arith(other, "//", PRODUCT, int.__floordiv__(self, other))

    def __rfloordiv__(self, other: Any) -> Any:
        return self._arith(other, "//", PRODUCT, int.__rfloordiv__(self, other), right=True)

    def __mod__(self, other: Any) -> Any:
        return self._arith(other, "%", PRODUCT, int.__mod__(self, other))

    def __rmod__(self, other: Any) -> Any:
        return self._arith(other, "%", PRODUCT, int.__rmod__(self, other), right=True)

    def __neg__(self) -> Any:
        return sized(-int(self), Code.of("-", _wrap(self, UNARY)), UNARY)

    def __pos__(self) -> Any:
        return self

    def __abs__(self) -> Any:
        return int(self) if self >= 0 else -self

    def __index__(self) -> int:
        return int(self)

    def __int__(self) -> int:
        return int.__int__(self)


class SizeTuple(tuple):
    """A tuple of sizes (a shape) with the code that computes it as a whole."""

    code: Code
    prec: int
    #: A slice of another (`x.shape[1:3]`): an item reads as itself (`x.shape[1]`).
    sliced: bool = False

    def __new__(cls, items: Any, code: Code, prec: int = ATOM) -> "SizeTuple":
        self = tuple.__new__(cls, items)
        self.code, self.prec = code, prec
        return self

    def __reduce__(self) -> Any:
        return (tuple, (tuple(self),))

    def __getitem__(self, index: Any) -> Any:
        item = tuple.__getitem__(self, index)
        me = self.code if self.prec == ATOM else Code.of("(", self.code, ")")
        if isinstance(index, slice):
            text = _slice_text(index)
            if text is None:
                return tuple(item)
            part = SizeTuple(item, Code.of(me, f"[{text}]"))
            part.sliced = True
            return part
        if isinstance(index, int) and not isinstance(index, (bool, Size)):
            if self.sliced and isinstance(item, Size):  # `x.shape[1]`, not `x.shape[1:3][0]`
                return item
            return Size(int(item), Code.of(me, f"[{literal(index)}]"))  # as the model indexes it
        return item

    def __add__(self, other: Any) -> Any:
        items = tuple.__add__(self, tuple(other)) if isinstance(other, tuple) else NotImplemented
        if items is NotImplemented:
            return items
        theirs = code_of(other)
        if theirs is None:
            return items
        return sized_tuple(items, Code.of(self.code, " + ", theirs), SUM)

    def __radd__(self, other: Any) -> Any:
        if not isinstance(other, tuple):
            return NotImplemented
        items = tuple(other) + tuple(self)
        theirs = code_of(other)
        if theirs is None:
            return items
        return sized_tuple(items, Code.of(theirs, " + ", self.code), SUM)

    def __mul__(self, other: Any) -> Any:
        return tuple(self) * other

    __rmul__ = __mul__


def sized(value: int, code: Code, prec: int = ATOM) -> int:
    """`Size(value, code)`, or the plain int when the code would be too long to read."""
    if sum(len(p) for p in code.parts if isinstance(p, str)) > MAX_CODE:
        return int(value)
    return Size(value, code, prec)


def sized_tuple(items: tuple, code: Code, prec: int = ATOM) -> tuple:
    if sum(len(p) for p in code.parts if isinstance(p, str)) > MAX_CODE:
        return tuple(items)
    return SizeTuple(items, code, prec)


#: Whether sizes read from arrays carry their code (`plain_sizes` turns it off).
_PROVENANCE: ContextVar[bool] = ContextVar("aotflax_size_provenance", default=True)


@contextmanager
def plain_sizes() -> Iterator[None]:
    """Resolve with sizes as plain ints: code then spells every size as its number.

    The padding proof of bucketed targets (`padding.check`) reads the numbers: a
    symbolic dimension's sentinel size in an op's code is a size used as a value.
    """
    token = _PROVENANCE.set(False)
    try:
        yield
    finally:
        _PROVENANCE.reset(token)


def shape_of(var: Var, shape: tuple[int, ...]) -> tuple[int, ...]:
    """`x.shape` for an array `x`: each dimension reads `x.shape[i]`."""
    if not _PROVENANCE.get():
        return tuple(shape)
    return SizeTuple((Size(d, Code.of(var, f".shape[{i}]")) for i, d in enumerate(shape)),
                     Code.of(var, ".shape"))


def read_of(var: Var, value: int, attr: str) -> Size:
    """`x.ndim`, `x.size`."""
    if not _PROVENANCE.get():
        return value  # type: ignore[return-value]
    return Size(value, Code.of(var, f".{attr}"))


def bound_to(var: Var, value: Any) -> Any:
    """`value` as read from a variable it was assigned to (`batch = x.shape[0]`)."""
    if isinstance(value, Size):
        return Size(int(value), Code((var,)))
    if isinstance(value, SizeTuple):
        return SizeTuple((Size(int(d), Code.of(var, f"[{i}]")) for i, d in enumerate(value)),
                         Code((var,)))
    return value


def has_code(value: Any) -> bool:
    """Whether a static value carries provenance anywhere inside."""
    if isinstance(value, (Size, SizeTuple)):
        return True
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, (tuple, list)):
        return False
    for v in value:  # a loop, not any(): every shape and argument list comes through here
        if type(v) is not int and has_code(v):  # (a plain int, the common item, has none)
            return True
    return False


def plain(value: Any) -> Any:
    """`value` with every size made a plain int (and every shape a plain tuple)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, Size):
        return int(value)
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value) if has_code(value) else value
    if isinstance(value, list) and has_code(value):
        return [plain(v) for v in value]
    if isinstance(value, dict) and has_code(value):
        return {k: plain(v) for k, v in value.items()}
    return value


def plain_shape(shape: Any) -> tuple:
    """`plain(tuple(shape))`, without a copy when `shape` is a tuple of plain ints."""
    if type(shape) is tuple:
        for d in shape:
            if type(d) is not int:
                break
        else:
            return shape
    return plain(tuple(shape))


def code_of(value: Any) -> Code | None:
    """Code for an int, a size or a tuple of them (None for anything else)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (Size, SizeTuple)):
        return Code((SizeRef(value),))
    if isinstance(value, int):
        return Code((literal(int(value)),))
    if isinstance(value, tuple):
        items = [code_of(v) for v in value]
        if any(i is None for i in items):
            return None
        if len(items) == 1:
            return Code.of("(", items[0], ",)")  # type: ignore[arg-type]
        return Code.of("(", Code.join(", ", items), ")")  # type: ignore[arg-type]
    return None


class SizeRef(Fragment):
    """A fragment of `Code`: a size written as the code reading it, where emit can name
    every variable that code reads (else as its value)."""

    __slots__ = ("value",)

    def __init__(self, value: Size | SizeTuple):
        self.value = value

    def vars(self) -> list[Var]:
        return self.value.code.vars()

    def render(self, names: dict[int, str]) -> str:
        code = self.value.code
        if all(id(v) in names for v in code.vars()):
            return code.render(names)
        return literal(plain(self.value))


def _wrap(value: Size, prec: int, strict: bool = False) -> Code:
    low = value.prec < prec or (strict and value.prec == prec)
    return Code.of("(", value.code, ")") if low else value.code


def _operand(value: Any, prec: int, right: bool) -> Code | None:
    if isinstance(value, Size):
        return Code.of(_wrap(value, prec, strict=right))
    if isinstance(value, int) and not isinstance(value, bool):
        text = literal(int(value))
        return Code((text if value >= 0 or prec < UNARY else f"({text})",))
    return None


def _slice_text(s: slice) -> str | None:
    parts = []
    for p in (s.start, s.stop, s.step):
        if p is not None and (not isinstance(p, int) or isinstance(p, (bool, Size))):
            return None
        parts.append("" if p is None else literal(int(p)))
    text = f"{parts[0]}:{parts[1]}"
    return text + (f":{parts[2]}" if s.step is not None else "")
