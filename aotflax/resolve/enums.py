"""`enum.Enum` classes of the model file: members as static values.

Model code of 2020-2021 named its choices with enums (`class Activation(enum.Enum):
RELU = "relu"`) and passed the members as hyperparameters (`M.partial(act=Activation.RELU)`),
compared them (`if act == Activation.RELU:`, `is`), read `.name` and `.value`, looked
them up (`Activation("relu")`, `Activation["RELU"]`) and looped over the class.  A
member is a static value of the interpreter (`values.EnumMember`): a singleton, equal
only to itself (an `IntEnum`'s also to its int, as Python's), compared by identity when
a module is specialized, shown as `Activation.RELU` in docstrings and never emitted as
code.  `enum.auto()` numbers members from 1, as Python does; `@enum.unique` refuses
aliases.  Methods in an enum's body are not interpreted (a located error where a target
reaches the class).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import ir, namespaces
from ..diagnostics import Span
from ..values import (
    EnumClass,
    EnumMember,
    Env,
    describe_value,
    is_static,
    shown,
)
from .base import Frame

if TYPE_CHECKING:
    from .core import Resolver

ENUM, INT_ENUM, UNIQUE = namespaces.ENUM, namespaces.INT_ENUM, namespaces.ENUM_UNIQUE


class _Auto:
    """What `enum.auto()` returns in a class body: the next number."""

    __slots__ = ()


_AUTO_VALUE = _Auto()


class EnumsMixin:
    """Enum class statements, their members' attributes, lookups by value."""

    def _enum_class(self: Resolver, cls: ir.ClassDef, bases: list, frame: Frame
                    ) -> EnumClass | None:
        """The enum a class statement defines, or None when it derives from no enum."""
        kinds = [b for b in bases if b in (ENUM, INT_ENUM)]
        if not kinds:
            return None
        if len(bases) != 1:
            raise self.error("AOT320", f"enum {cls.name} derives from {len(bases)} classes; "
                             "an enum of the model file has one base, enum.Enum or "
                             "enum.IntEnum", cls.name_span)
        unique = False
        for node in cls.decorators:
            if self.eval(node, frame) is not UNIQUE:
                raise self.error("AOT325", "an enum takes only the @enum.unique decorator",
                                 node.span)
            unique = True
        if cls.methods or cls.others:
            where = cls.methods[0].span if cls.methods else cls.others[0].where
            raise self.error("AOT102", f"enum {cls.name}: an enum body may contain members "
                             "(NAME = value) and a docstring only", where)
        enum = EnumClass(cls.name, kinds[0] is INT_ENUM, cls.name_span)
        body = Frame(Env(frame.env), None, None, None)  # the body's names, then the file's
        last = 0
        for stmt in cls.fields:
            if not (isinstance(stmt, ir.Assign) and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ir.Name)):
                raise self.error("AOT102", f"enum {cls.name}: a member is written NAME = "
                                 "value", stmt.span)
            name = stmt.targets[0].id
            value = self.eval(stmt.value, body)
            if value is _AUTO_VALUE:
                value = last + 1
            if not is_static(value) or isinstance(value, (EnumMember, EnumClass)):
                raise self.error("AOT102", f"enum {cls.name}: member {name} needs a static "
                                 f"value, got {describe_value(value)}", stmt.value.span)
            if enum.int_enum and (isinstance(value, bool) or not isinstance(value, int)):
                raise self.error("AOT102", f"IntEnum {cls.name}: member {name} must be an "
                                 f"int, got {describe_value(value)}", stmt.value.span)
            if name in enum.members or name.startswith("_"):
                raise self.error("AOT102", f"enum {cls.name}: member name {name!r} is "
                                 + ("used twice" if name in enum.members else
                                    "private (Python does not make it a member)"), stmt.span)
            if isinstance(value, int) and not isinstance(value, bool):
                last = value
            alias = next((m for m in enum.members.values()
                          if m.value == value and type(m.value) is type(value)), None)
            if alias is not None and unique:
                raise self.error("AOT102", f"@enum.unique: {cls.name}.{name} repeats the value "
                                 f"of {cls.name}.{alias.name}", stmt.span)
            enum.members[name] = alias or EnumMember(enum, name, value)
            body.env.set(name, enum.members[name])
        return enum

    def _enum_auto(self: Resolver, args: list, kwargs: dict, span: Span) -> _Auto:
        if args or kwargs:
            raise self.error("AOT301", "enum.auto() takes no arguments", span)
        return _AUTO_VALUE

    def _enum_attribute(self: Resolver, value: EnumClass | EnumMember, attr: str,
                        span: Span) -> Any:
        if isinstance(value, EnumMember):
            if attr == "name":
                return value.name
            if attr == "value":
                return value.value
            raise self.error("AOT346", f"enum member {value!r} has .name and .value, not "
                             f".{attr}", span)
        if attr in value.members:
            return value.members[attr]
        raise self.error("AOT346", f"enum {value.name} has no member {attr}", span,
                         hint=f"its members: {', '.join(value.members) or 'none'}")

    def _enum_lookup(self: Resolver, enum: EnumClass, args: list, kwargs: dict,
                     span: Span) -> EnumMember:
        """`Color("red")`: the member holding a value (an `IntEnum`'s int, or its member)."""
        if len(args) != 1 or kwargs:
            raise self.error("AOT301", f"{enum.name}(value) takes one value", span)
        value = args[0]
        if isinstance(value, EnumMember) and value.cls is enum:
            return value
        for member in enum.members.values():
            if not isinstance(value, EnumMember) and type(member.value) is type(value) \
                    and member.value == value:
                return member
        raise self.error("AOT345", f"{shown(value)} is not a valid {enum.name}", span,
                         hint="its values: " + ", ".join(shown(m.value) for m in enum))


__all__ = ["EnumsMixin"]
