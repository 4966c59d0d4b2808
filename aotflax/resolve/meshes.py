"""Device meshes and parameter sharding by path, checked at build time.

`aot.target(..., devices=aot.mesh(data=2, model=4), param_sharding=[
("*/kernel", (None, "model")), ("*/bias", ("model",))])` compiles the target
for 8 devices: inputs are split along their first axis over the mesh's first
axis (data parallel) and each parameter is partitioned by the first rule whose
`fnmatch` pattern matches its path ("block_0/Dense_0/kernel"); parameters no
rule matches are replicated.  Every spec is checked against the parameter's
shape here, so a mismatch is a located build error, not an XLA failure.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from .. import quoting
from ..diagnostics import Note, Span
from ..program import ParamDecl
from ..values import MeshSpec, describe_value

if TYPE_CHECKING:
    from .core import Resolver


def mesh(r: "Resolver", args: list, kwargs: dict, span: Span) -> MeshSpec:
    """`aot.mesh(data=2, model=4)`."""
    if args or not kwargs:
        raise r.error("AOT430", "aot.mesh takes named axis sizes, e.g. aot.mesh(data=2, model=4)",
                      span)
    for name, size in kwargs.items():
        problem = quoting.identifier_problem(name, "mesh axis name")
        if problem:
            raise r.error("AOT430", f"{problem}; mesh axes are named by identifiers, e.g. "
                          "aot.mesh(data=2, model=4)", span)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise r.error("AOT430", f"mesh axis '{name}' needs a positive int size, got "
                          f"{describe_value(size)}", span)
    return MeshSpec(tuple(kwargs.items()))


def check_rules(r: "Resolver", rules: Any, axes: tuple[tuple[str, int], ...],
                span: Span) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """Validate `param_sharding=[(pattern, spec), ...]` against the mesh's axis names."""
    names = {n for n, _ in axes}
    if not axes:
        raise r.error("AOT431", "param_sharding= needs devices=aot.mesh(...) naming the axes",
                      span)
    if not isinstance(rules, (list, tuple)):
        raise r.error("AOT431", "param_sharding= is a list of (path pattern, partition spec) "
                      "pairs", span)
    out = []
    for rule in rules:
        ok = (isinstance(rule, tuple) and len(rule) == 2 and isinstance(rule[0], str)
              and isinstance(rule[1], tuple))
        if not ok:
            raise r.error("AOT431", f"a sharding rule is (\"pattern\", (axis or None, ...)), got "
                          f"{describe_value(rule)}", span)
        for axis in rule[1]:
            if axis is not None and axis not in names:
                raise r.error("AOT431", f"sharding rule {rule[0]!r} names mesh axis {axis!r}; "
                              f"the mesh has {', '.join(sorted(names))}", span)
        out.append((rule[0], rule[1]))
    return tuple(out)


def param_specs(r: "Resolver", rules: tuple[tuple[str, tuple[Any, ...]], ...],
                axes: tuple[tuple[str, int], ...], params: tuple[ParamDecl, ...],
                span: Span) -> tuple[tuple[tuple[str, ...], tuple[Any, ...]], ...]:
    """The partition spec of every parameter a rule matches (others are replicated)."""
    sizes = dict(axes)
    out = []
    for decl in params:
        path = "/".join(decl.path)
        rule = next(((p, spec) for p, spec in rules if fnmatchcase(path, p)), None)
        if rule is None:
            continue
        pattern, spec = rule
        if len(spec) > len(decl.shape):
            raise r.error("AOT432", f"sharding rule {pattern!r} gives {path} of shape "
                          f"{decl.shape} a spec of rank {len(spec)}", span,
                          notes=(Note("parameter declared here", decl.span),))
        for dim, axis in zip(decl.shape, spec):
            if axis is not None and dim % sizes[axis]:
                raise r.error("AOT432", f"sharding rule {pattern!r} splits {path} dimension "
                              f"{dim} over mesh axis '{axis}' of size {sizes[axis]}, which "
                              "does not divide it", span,
                              notes=(Note("parameter declared here", decl.span),))
        out.append((decl.path, spec))
    return tuple(out)


def processes(r: "Resolver", call: Any, kwargs: dict, axes: tuple[tuple[str, int], ...],
              devices: int) -> int:
    """Pops `processes=`: how many `jax.distributed` processes a target's devices span.

    The processes split the mesh's first axis (the data axis; `devices` itself for
    plain data parallelism) into equal blocks, one per process, so each process's
    devices hold whole rows of the batch: the process-local shard it feeds.
    """
    value = kwargs.pop("processes", 1)
    span = next((kw.span for kw in call.keywords if kw.name == "processes"), call.span)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise r.error("AOT433", f"processes= must be a positive int, got {describe_value(value)}",
                      span)
    name, first = axes[0] if axes else ("data", devices)
    if first % value:
        where = (f"the mesh's first axis '{name}' (size {first})" if axes
                 else f"the target's {devices} device{'s' if devices != 1 else ''}")
        raise r.error("AOT433", f"processes={value} splits {where} into equal blocks, one per "
                      f"process, and {value} does not divide {first}", span,
                      hint=f"give the first mesh axis a multiple of {value} devices, e.g. "
                           f"devices=aot.mesh({name}={value * max(1, first // value)})")
    return value


def check_fixed_shapes(r: "Resolver", processes: int, specs: dict[str, Any]) -> None:
    """A target over several processes has fixed input shapes (each process's shard is
    a fixed block of the batch)."""
    if processes == 1:
        return
    for name, spec in specs.items():
        symbolic = next((d for d in spec.shape if isinstance(d, str)), None)
        if symbolic is not None:
            raise r.error("AOT433", f"a target over processes={processes} needs fixed input "
                          f"shapes, and input '{name}' has the symbolic dimension "
                          f"'{symbolic}'", spec.span,
                          hint="declare one target per batch size")
