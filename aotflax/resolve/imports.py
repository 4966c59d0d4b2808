"""Top-level definitions: imports (of the static language and of other model files),
classes, `del`, and the statements the DSL does not interpret.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import ir, namespaces
from ..diagnostics import Note, Span
from ..values import (
    POISON,
    ModuleRef,
    ModuleValue,
    Opaque,
    Poison,
    RecordClass,
    UserModule,
    describe_value,
)
from .base import Abort, ClassNamespace, Frame
from .toplevel import KNOWN_LIST, KNOWN_MODULES, module_of

if TYPE_CHECKING:
    from .core import Resolver


class ImportsMixin:
    """Imports, classes, `del` and unsupported statements."""

    # ---------------------------------------------------------------- statements

    def _stmt_Import(self: Resolver, stmt: ir.Import, frame: Frame) -> None:
        frame.env.set(stmt.alias, self._import_value(stmt, frame))

    def _stmt_Delete(self: Resolver, stmt: ir.Delete, frame: Frame) -> None:
        """`del key, dtype`: the names are unbound; deleting items is not supported."""
        for t in stmt.targets:
            names = t.elts if isinstance(t, (ir.TupleExpr, ir.ListExpr)) else (t,)
            for n in names:
                if not isinstance(n, ir.Name):
                    raise self.error("AOT332", "'del' of items or attributes is not supported",
                                     n.span, hint="build a new value instead")
                if n.id not in frame.env.vars and not frame.env.lookup(n.id)[0]:
                    raise self.error("AOT340", f"name '{n.id}' is not defined", n.span)
                frame.env.vars.pop(n.id, None)

    def _stmt_Unsupported(self: Resolver, stmt: ir.Unsupported, frame: Frame) -> None:
        raise self.error(stmt.code, stmt.message, stmt.where, hint=stmt.hint)

    def _stmt_ClassDef(self: Resolver, cls: ir.ClassDef, frame: Frame) -> None:
        enum = self._enum_class(cls, self._class_bases(cls, frame), frame)  # (enums.py)
        if enum is not None:
            frame.env.set(cls.name, enum)
            return
        record = self._record_class(cls, frame)  # a dataclass or NamedTuple (records.py)
        if record is not None:
            frame.env.set(cls.name, record)
            return
        bases = self._class_bases(cls, frame)
        layer = self._layer_base(cls, bases, frame)
        if layer is not None:  # `class StdConv(nn.Conv)`: the layer, with its `param` hooked
            frame.env.set(cls.name, ModuleRef(UserModule(cls.name, cls, frame.env, layer)))
            return
        if any(isinstance(b, Poison) for b in bases):
            raise Abort()  # reported where it failed
        parent = self._module_parent(cls, bases)
        if parent is None and not any(b is namespaces.MODULE_BASE for b in bases):
            plain = self._plain_class(cls, bases, frame)
            if plain is not None:
                frame.env.set(cls.name, plain)
                return
            other = next(b for b in bases if not isinstance(b, RecordClass)
                         and b is not namespaces.ABC)
            raise self.error(
                "AOT320", f"class {cls.name} derives from {describe_value(other)}: aotflax "
                "interprets classes of the model files (nn.Module classes, dataclasses, "
                "NamedTuples and classes of those), and a target uses it", cls.name_span,
                hint=f"if {cls.name} is a model, write: class {cls.name}(nn.Module):; "
                     "otherwise derive it from object or a class of the model file")
        pending = self._module_decorators(cls, frame)
        if cls.others:  # the first in source order
            first = min(cls.others, key=lambda s: (s.span.line, s.span.col))
            raise self.error(first.code, first.message, first.where, hint=first.hint)
        # a module without `apply` is an error only where it is called: flax.nn code
        # writes abstract bases (`class BaseModel(nn.Module)` of classmethods) whose
        # subclasses define `apply` (`_specialize_bound`)
        kinds = self._method_kinds(cls, frame)
        attributes = self._class_body(cls, frame)
        if parent is not None:  # inherited, as Python looks them up: the class's own first
            own = {m.name for m in cls.methods}
            kinds["static_methods"] |= {m for m in parent.static_methods if m not in own}
            kinds["class_methods"] |= {m for m in parent.class_methods if m not in own}
            kinds["refused_methods"] += tuple(
                (m, where) for m, where in parent.refused_methods if m not in own)
            attributes = {**parent.attributes, **attributes}
        ref = ModuleRef(UserModule(
            cls.name, cls, frame.env, attributes=attributes, parent=parent, **kinds))
        frame.env.set(cls.name, self._apply_module_decorators(cls, ref, pending, frame))

    def _module_parent(self: Resolver, cls: ir.ClassDef, bases: list) -> UserModule | None:
        """The user module a class statement subclasses (`class B(A)`, A a module of the
        model files), checked: one base, a class rather than a partial."""
        users = [b for b in bases if isinstance(b, ModuleRef) and isinstance(b.module, UserModule)]
        if not users:
            return None
        self._one_unbound_base(cls, bases, users[0], "module", users[0].class_name)
        if users[0].module.base is not None:
            raise self.error("AOT374", f"class {cls.name} subclasses {users[0].class_name}, "
                             "itself a subclass of a built-in layer", cls.name_span,
                             hint="subclass the layer itself")
        return users[0].module

    def _one_unbound_base(self: Resolver, cls: ir.ClassDef, bases: list, base: ModuleRef,
                          kind: str, written: str) -> None:
        """A subclass of a layer or module (`kind`) has it as its only base, unbound."""
        if len(bases) > 1:
            raise self.error("AOT374", f"class {cls.name} subclasses the {kind} {written} and "
                             f"something else; a {kind} subclass has one base", cls.name_span)
        if base.bound:
            raise self.error("AOT374", f"class {cls.name} subclasses a partially applied "
                             f"{kind}", cls.name_span, hint=f"subclass {written} and bind "
                             f"hyperparameters with {cls.name}.partial(...)")

    def _method_kinds(self: Resolver, cls: ir.ClassDef, frame: Frame) -> dict[str, Any]:
        """The module's `@staticmethod`s, and its methods with any other decorator than
        those and `@nn.module_method` (every method is callable: that one only documents
        it).  Such a method is refused where a target's code uses it
        (`_check_method_usable`), so a classmethod no target calls stays harmless."""
        static: set[str] = set()
        classmethods: set[str] = set()
        refused: dict[str, Span] = {}
        for m in cls.methods:
            for node in m.decorators:
                builtin = builtin_decorator(node, frame)
                if builtin == "staticmethod":
                    static.add(m.name)
                elif builtin == "classmethod" and len(m.decorators) == 1 and m.params.params \
                        and m.params.params[0].kind == "positional":
                    classmethods.add(m.name)
                elif builtin is not None or self.eval(node, frame) is not namespaces.MODULE_METHOD:
                    refused.setdefault(m.name, node.span)
        return {"static_methods": frozenset(static), "class_methods": frozenset(classmethods),
                "refused_methods": tuple(refused.items())}

    def _check_method_usable(self: Resolver, module: UserModule, name: str, span: Span) -> None:
        """A method decorated otherwise than the static language knows, used at `span`."""
        for refused, where in module.refused_methods:
            if refused == name:
                raise self.error("AOT325", f"method {name} of module {module.name}: only "
                                 "@nn.module_method, @staticmethod and @classmethod "
                                 "are supported on module methods", span, notes=(Note("decorated here", where),))

    def _class_body(self: Resolver, cls: ir.ClassDef, frame: Frame) -> dict[str, Any]:
        """A module class's attributes: its body's assignments run as Python runs a class
        body (in order, each seeing the earlier ones and the file's names)."""
        body = Frame(ClassNamespace(frame.env), None, None, None)
        for stmt in cls.fields:
            if isinstance(stmt, ir.AnnAssign) and stmt.value is None:
                continue  # an annotation alone binds nothing
            self._exec(stmt, body)
        return dict(body.env.vars)

    # ---------------------------------------------------------------- imports

    def _import_value(self: Resolver, imp: ir.Import, frame: Frame) -> Any:
        module = imp.dotted or imp.module
        if imp.level:
            importer = module_of(frame.env)
            base = None
            if importer is not None and self.workspace is not None:
                base = self.workspace.relative(importer.model, imp.level, imp.module)
            if base is None:
                raise self.error("AOT104", f"relative import '{'.' * imp.level}{imp.module}' "
                                 "leaves the build folder", imp.span,
                                 hint="build the folder that contains every model file")
            return self._from_workspace(base, imp)
        top = module.split(".")[0]
        if module == "absl.logging" or (module == "absl" and imp.member == "logging"):
            return namespaces.namespace_for(imp.module, imp.member)  # the rest of absl is not ours
        if top in KNOWN_MODULES:
            value = namespaces.namespace_for(imp.module, imp.member)
            if value is None and imp.dotted:  # `import jax.numpy` binds `jax`
                value = namespaces.namespace_for(top, None)
            if value is None:
                what = f"{module}.{imp.member}" if imp.member else module
                return Opaque(imp.alias, f"'{what}' is not part of what aotflax interprets",
                              imp.span)
            return value
        if self.workspace is not None and self.workspace.locate(module) is not None:
            return self._from_workspace(module, imp)
        if module == "absl.flags" or (module == "absl" and imp.member == "flags"):
            return Opaque(imp.alias, "absl flags are set on the command line of the program "
                          "that runs the model, which the build never runs ('absl' is not a "
                          f"module aotflax interprets; it interprets {KNOWN_LIST})", imp.span)
        return Opaque(imp.alias, f"'{top}' is not a module aotflax interprets (it interprets "
                      f"{KNOWN_LIST})", imp.span)

    def _from_workspace(self: Resolver, dotted: str, imp: ir.Import) -> Any:
        """A model file of the build (or one of its names) for an import statement."""
        ws = self.workspace
        assert ws is not None
        if imp.member is None:
            if imp.dotted and imp.alias == imp.module:  # `import a.b.c` binds package `a`
                return self._module_value(imp.module, imp.span)
            return self._module_value(dotted, imp.span)
        full = f"{dotted}.{imp.member}" if dotted else imp.member
        if ws.locate(full) is not None or not dotted:
            return self._module_value(full, imp.span)
        parent = self._module_value(dotted, imp.span)
        if parent.globals is not None:
            found, value = parent.globals.lookup(imp.member)
            if found:
                return value
        raise self.error("AOT104", f"'{imp.member}' cannot be imported from model file "
                         f"'{dotted}': it defines no such name", imp.span)

    def _module_value(self: Resolver, dotted: str, span: Span) -> ModuleValue:
        ws = self.workspace
        found = ws.locate(dotted) if ws is not None else None
        if ws is None or found is None:
            raise self.error("AOT104", f"no model file '{dotted}' in the build folder", span)
        kind, path = found
        globals_ = None
        if kind == "file":
            try:
                model = ws.load(path)
            except Exception as e:  # a BuildError of the imported file: report its errors
                diagnostics = getattr(e, "diagnostics", None)
                if diagnostics is None:
                    raise
                for d in diagnostics:
                    self.errors += 1
                    self.reporter.diagnostics.append(d)
                raise Abort() from None
            globals_ = self.module_globals(model)
        value = ModuleValue(dotted, globals_)

        def submodule(attr: str) -> Any:
            if ws is not None and ws.locate(f"{dotted}.{attr}") is not None:
                return self._module_value(f"{dotted}.{attr}", span)
            return None

        value.submodule = submodule
        return value

    # ---------------------------------------------------------------- uses

    def _module_attribute(self: Resolver, value: ModuleValue, attr: str, span: Span) -> Any:
        if value.globals is not None:
            found, got = value.globals.lookup(attr)
            if found:
                return got
        sub = value.submodule(attr) if value.submodule is not None else None
        if sub is not None:
            return sub
        raise self.error("AOT346", f"model file '{value.name}' has no name '{attr}'", span)

    def _opaque_error(self: Resolver, value: Opaque, span: Span, what: str = "used") -> Abort:
        return self.error(
            "AOT104", f"'{value.written}' cannot be {what} here: {value.why}", span,
            notes=(Note("imported here", value.span),) if value.span is not None else (),
            # (a name of the static language's own modules says what to do in its reason)
            hint="only code that no target reaches may use other libraries (it is skipped); "
                 "compute the value in the model file or pass it as a hyperparameter"
                 if value.span is not None else None)

    def _check_not_opaque(self: Resolver, values: Any, span: Span, what: str = "passed") -> None:
        """Values a target's code uses (arguments, operands, conditions, loops) may not be
        opaque names; `what` says how it is used ("tested" for an `if`)."""
        for v in values:
            if isinstance(v, Opaque):
                raise self._opaque_error(v, span, what)


__all__ = ["ImportsMixin", "POISON", "describe_value"]


def builtin_decorator(node: Any, frame: Frame) -> str | None:
    """`staticmethod`, `classmethod` or `property` when a method's decorator is that
    builtin (not shadowed by a name of the file), else None."""
    if isinstance(node, ir.Name) and node.id in ("staticmethod", "classmethod", "property") \
            and not frame.env.lookup(node.id)[0]:
        return node.id
    return None
