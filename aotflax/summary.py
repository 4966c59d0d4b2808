"""The model summary: `aotflax summary PATH [--target NAME]`.

Every shape, parameter and op is known once a model file is resolved, so the
table is exact and nothing runs: one row per module instance, nested by path
(Linen's names), with its outputs, its parameters and state (counting
everything below it) and its FLOPs (rules in `ops/flops.py`).  For a target
whose artifacts were built, the executable's memory (XLA's
`memory_analysis()`, recorded in the manifest) and its size on disk follow.

`summarize(path)` returns `TargetSummary` objects; `str()` of one is the table
the command prints.  This module imports no jax: it reads the resolved program
and the manifest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import artifacts, ir, symbolic
from . import dtypes as dt
from .artifacts import human_bytes
from .diagnostics import BuildError
from .parse import decode_source, parse_model
from .program import FileProgram, Function, Op, ParamDecl, TargetProgram, Tensor, Var
from .resolve import resolve
from .resolve.workspace import Workspace
from .shapes import size


class UnknownTarget(LookupError):
    """`--target NAME` names no target of the file (the message lists them)."""


@dataclass(frozen=True)
class Cost:
    """A count that may grow with symbolic dimensions: `const + sum(per[d] * d)`."""

    const: int
    per: tuple[tuple[str, int], ...] = ()

    def __str__(self) -> str:
        parts = [f"{k:,}*{d}" for d, k in self.per if k]
        if self.const or not parts:
            parts.append(f"{self.const:,}")
        return " + ".join(parts)


@dataclass
class Row:
    """One module instance; counts include everything below it."""

    #: Linen path from the target's module ("block_0", "Conv_0"); () for the module itself.
    path: tuple[str, ...]
    #: Class name ("ResNet", "Conv", "DenseGeneral").
    module: str
    #: Output shapes, e.g. "f32[8, 10]" (one per distinct output).
    outputs: list[str] = field(default_factory=list)
    params: int = 0
    param_bytes: int = 0
    state_bytes: int = 0
    #: FLOPs of one call of the target (every call of a shared instance).
    flops: Cost = Cost(0)
    #: FLOPs of the instance's own ops (without its children); internal.
    own: int = 0

    @property
    def name(self) -> str:
        return self.path[-1] if self.path else ""


@dataclass
class Memory:
    """What XLA reports for one compiled executable (bytes), plus its file size."""

    platform: str
    arguments: int
    outputs: int
    temporaries: int
    generated_code: int
    alias: int
    peak: int
    file_bytes: int


@dataclass
class TargetSummary:
    """The summary of one target."""

    target: str
    file: str
    description: str
    inputs: list[tuple[str, str]]
    rows: list[Row]
    #: State variables (running statistics, caches): count and bytes.
    state: int = 0
    #: Compiled executables found for it (empty: not compiled, see `note`).
    memory: list[Memory] = field(default_factory=list)
    #: Size of every artifact of the target on disk (executables, export, manifest).
    disk_bytes: int | None = None
    #: Why no memory is shown (not compiled, stale artifacts).
    note: str | None = None
    #: What the FLOPs cover, when that is not the whole target (training targets).
    scope: str | None = None

    @property
    def total(self) -> Row:
        return self.rows[0]

    def __str__(self) -> str:
        return format_summary(self)


# ------------------------------------------------------------------ building


def summarize(path: str | Path, target: str | Sequence[str] | None = None, *,
              output: str | Path = "generated", module: str | None = None,
              root: str | Path | None = None) -> list[TargetSummary]:
    """Summaries of the targets of one model file (all, or those named by `target`).

    **Arguments:** `path`: the model file; `target`: a target's name or several;
    `output`: the build's output folder, where compiled artifacts are looked up;
    `module`: the generated module's dotted name there (default: the file's stem,
    as when the file's own folder is built); `root`: the build folder, where
    imports between model files are looked up (default: the file's folder).

    **Returns:** one `TargetSummary` per target, in declaration order.

    **Raises:** `BuildError` for a model with errors, `UnknownTarget` for a name it lacks.
    """
    path = Path(path)
    module = module or path.stem
    programs = resolve_file(path, Path(root) if root is not None else path.parent)
    names = [target] if isinstance(target, str) else list(target or ())
    declared = [t.name for t in programs[0].targets]
    missing = [n for n in names if n not in declared]
    if missing:
        raise UnknownTarget(f"{path.as_posix()} declares no target named {missing[0]!r} (its "
                            f"targets: {', '.join(declared) or 'none'})")
    chosen = [t for t in programs[0].targets if not names or t.name in names]
    out = []
    for t in chosen:
        variants = [next(x for x in p.targets if x.name == t.name) for p in programs]
        summary = summarize_target(variants, programs[0].relpath)
        _add_artifacts(summary, Path(output) / "artifacts", module, t.name,
                       programs[0].source_sha256)
        out.append(summary)
    return out


def resolve_file(path: Path, root: Path) -> list[FileProgram]:
    """Parse and resolve a model file of the build folder `root` (nothing runs).

    **Returns:** the program, then, when a target has symbolic dimensions, the
    program resolved with a second set of sizes for them (`symbolic.py`), from
    which the summary reads how counts grow.
    """
    def load(file: Path) -> ir.ModelFile:
        rel = file.resolve().relative_to(root.resolve())
        return parse_model(decode_source(file.as_posix(), file.read_bytes()), rel.as_posix())

    workspace = Workspace(root, load)
    model = workspace.load(path)
    a = symbolic.Sentinels(list(symbolic.SENTINELS_A))
    try:
        program = resolve(model, a, workspace)
    except BuildError as e:
        raise symbolic.rename_in_errors(e, a) from None
    if not symbolic.has_symbolic(program):
        return [program]
    b = symbolic.Sentinels(list(symbolic.SENTINELS_B))
    return [program, resolve(model, b, workspace)]


def summarize_target(variants: Sequence[TargetProgram], file: str) -> TargetSummary:
    """The summary of one target from its resolved program(s).

    **Arguments:** `variants`: the target resolved once, or once per sentinel set
    (`resolve_file`); `file`: the model's path for the header.
    """
    tables = [_rows(t) for t in variants]
    rows = tables[0]
    sentinels = _sentinels(variants)
    for i, row in enumerate(rows):
        row.flops = _fit([table[i].flops.const for table in tables], sentinels)
        row.outputs = [_rename(o, sentinels) for o in row.outputs]
    t = variants[0]
    inputs = [(name, _rename(_describe(shape, dtype), sentinels)) for name, shape, dtype
              in t.inputs]
    summary = TargetSummary(t.name, f"{file}:{t.span.line}", t.description, inputs, rows,
                            state=sum(size(d.shape) for d in t.state))
    if t.train is not None:
        summary.scope = "the forward pass (apply); train_step adds the loss, gradients and update"
    return summary


def target_flops(t: TargetProgram) -> int:
    """FLOPs of one call of a fixed-shape target (the summary's total)."""
    return _rows(t)[0].flops.const


def _sentinels(variants: Sequence[TargetProgram]) -> list[tuple[str, int, int]]:
    """(name, size in the first resolution, size in the second) per symbolic dimension."""
    if len(variants) < 2 or not variants[0].symbolic:
        return []
    out: list[tuple[str, int, int]] = []
    first, second = variants
    shapes_a = {n: s for n, s, _ in first.inputs}
    shapes_b = {n: s for n, s, _ in second.inputs}
    for name, dims in first.symbolic:
        for d, a, b in zip(dims, shapes_a[name], shapes_b[name]):
            if isinstance(d, str) and all(d != s for s, _, _ in out):
                out.append((d, a, b))
    return out


def _fit(values: list[int], sentinels: list[tuple[str, int, int]]) -> Cost:
    """A count at two sets of sizes, as `const + k * dim` (one symbolic dimension)."""
    if len(values) < 2 or values[0] == values[1]:
        return Cost(values[0])
    if len(sentinels) != 1:
        return Cost(values[0])  # several dims: shown at the first sizes (see the note)
    name, a, b = sentinels[0]
    slope, rest = divmod(values[1] - values[0], b - a)
    const = values[0] - slope * a
    if rest or const < 0:
        return Cost(values[0])
    return Cost(const, ((name, slope),))


def _rename(text: str, sentinels: list[tuple[str, int, int]]) -> str:
    for name, a, _ in sentinels:
        text = re.sub(rf"(?<![\w.]){a}(?![\w.])", name, text)
    return text


def _describe(shape: tuple[int, ...], dtype: str) -> str:
    from .program import describe

    return describe(shape, dtype)


class _Walk:
    """Walks a target's functions from its entry, attributing ops to instances."""

    def __init__(self, root_module: str) -> None:
        self.rows: dict[tuple[str, ...], Row] = {(): Row((), root_module)}

    def row(self, path: tuple[str, ...], module: str) -> Row:
        row = self.rows.get(path)
        if row is None:
            for i in range(1, len(path)):  # parents first, so the table nests
                self.rows.setdefault(path[:i], Row(path[:i], ""))
            row = self.rows[path] = Row(path, module)
        elif not row.module:
            row.module = module
        return row

    def function(self, fn: Function, base: tuple[str, ...], times: int) -> None:
        producers: dict[int, tuple[tuple[str, ...], Var]] = {}
        self.body(fn.body, base, times, producers)
        for t in fn.result_tensors:
            self.output_of(producers, t, base)

    def body(self, ops: Iterable[Op], base: tuple[str, ...], times: int,
             producers: dict[int, tuple[tuple[str, ...], Var]]) -> None:
        for op in ops:
            info = op.info
            owner = base
            if info is not None and info.path is not None:
                owner = base + info.path
                self.row(owner, info.module)
            for var in op.inputs():
                self.output_of(producers, var, owner)
            if info is not None:
                self.rows[owner].own += info.flops * times
                if info.callee is not None:
                    self.function(info.callee, owner, times)
            # a scan's step runs `trips` times; of a cond's branches, the costliest counts
            nested = op.nested
            if nested and info is not None and info.branches:
                nested = (max(nested, key=lambda f: _flops(f.body)),)
            for inner in nested:
                self.body(inner.body, base, times * (info.trips if info else 1), producers)
                for t in inner.result_tensors:
                    self.output_of(producers, t, base)
            for var in op.outputs:
                producers[id(var)] = (owner, var)

    def output_of(self, producers: dict[int, tuple[tuple[str, ...], Var]], var: Var,
                  consumer: tuple[str, ...]) -> None:
        """A value produced in one instance and read outside it is an output of that instance."""
        found = producers.get(id(var))
        if found is None:
            return
        owner, value = found
        if not isinstance(value, Tensor):
            return
        common = 0
        while common < min(len(owner), len(consumer)) and owner[common] == consumer[common]:
            common += 1
        text = value.describe()
        # an output of the instance that made it and of each instance around it that the
        # reader is outside of (attention's `out` projection gives the attention's output)
        for depth in range(len(owner), common, -1):
            row = self.rows.get(owner[:depth])
            if row is not None and text not in row.outputs:
                row.outputs.append(text)


def _flops(body: Iterable[Op]) -> int:
    """FLOPs of one run of `body`, what it calls included (a cond's branches: each)."""
    total = 0
    for op in body:
        info = op.info
        if info is not None:
            total += info.flops
            if info.callee is not None:
                total += _flops(info.callee.body)
        for inner in op.nested:
            total += _flops(inner.body) * (info.trips if info else 1)
    return total


def _rows(t: TargetProgram) -> list[Row]:
    walk = _Walk(t.description.split(".", 1)[0])
    walk.function(t.function, (), 1)
    rows = walk.rows
    rows[()].outputs = [_describe(shape, dtype) for shape, dtype in t.outputs]
    for decl in t.params:
        _charge(rows, decl.path[:-1], decl, params=True)
    for decl in t.state:
        _charge(rows, decl.path[1:-1], decl, params=False)
    totals = dict.fromkeys(rows, 0)
    for path, row in rows.items():  # FLOPs include everything below the instance
        for i in range(len(path) + 1):
            totals[path[:i]] += row.own
    for path, row in rows.items():
        row.flops = Cost(totals[path])
    return list(rows.values())


def _charge(rows: dict[tuple[str, ...], Row], owner: tuple[str, ...], decl: ParamDecl,
            params: bool) -> None:
    n = size(decl.shape)
    nbytes = n * dt.itemsize(decl.dtype)
    for i in range(len(owner) + 1):
        row = rows.get(owner[:i])
        if row is None:
            continue
        if params:
            row.params += n
            row.param_bytes += nbytes
        else:
            row.state_bytes += nbytes


# ------------------------------------------------------------------ artifacts


def _add_artifacts(summary: TargetSummary, root: Path, module: str, target: str,
                   source_sha256: str) -> None:
    folder = artifacts.target_folder(root, module, target)
    try:
        manifest = artifacts.read_manifest(folder)
    except artifacts.ManifestError:
        summary.note = (f"not compiled: no artifacts in {folder.as_posix()} (build with "
                        "`python aot_build.py`, or pass -o)")
        return
    if manifest.get("source_sha256") != source_sha256:
        summary.note = (f"the artifacts in {folder.as_posix()} were built from another "
                        "version of the model file: rebuild to see their memory")
        return
    summary.memory = memory_of(manifest)
    summary.disk_bytes = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    if not summary.memory:
        summary.note = "no native executable (export only): memory is known after loading"


def memory_of(manifest: dict[str, Any]) -> list[Memory]:
    """The memory recorded per executable of a manifest (compile.py writes it)."""
    out = []
    for platform, entry in sorted(manifest.get("executables", {}).items()):
        mem = entry.get("memory")
        if not isinstance(mem, dict):
            continue
        count = {k: int(mem.get(k, 0)) for k in (
            "arguments", "outputs", "temporaries", "generated_code", "alias", "peak")}
        out.append(Memory(platform, **count, file_bytes=int(entry.get("size", 0))))
    return out


# ------------------------------------------------------------------ printing


_HEADER = ("path", "module", "outputs", "params", "param bytes", "state bytes", "FLOPs")


def format_summary(s: TargetSummary, max_outputs: int = 2) -> str:
    """The table `aotflax summary` prints for one target."""
    inputs = ", ".join(f"{n}: {d}" for n, d in s.inputs)
    lines = [f"{s.target}: {s.description} ({s.file})", f"inputs: {inputs}", ""]
    table = []
    for row in s.rows:
        outs = row.outputs[:max_outputs] + (["..."] if len(row.outputs) > max_outputs else [])
        table.append(("  " * len(row.path) + (row.name or s.target), row.module or "-",
                      ", ".join(outs) or "-", f"{row.params:,}" if row.params else "",
                      human_bytes(row.param_bytes) if row.param_bytes else "",
                      human_bytes(row.state_bytes) if row.state_bytes else "",
                      str(row.flops)))
    widths = [max(len(r[i]) for r in [_HEADER, *table]) for i in range(len(_HEADER))]
    right = {3, 4, 5, 6}
    for r in [_HEADER, *table]:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
    total = s.total
    lines.append("")
    lines.append(f"total: {total.params:,} params ({total.param_bytes:,} bytes), "
                 f"{total.flops} FLOPs")
    if s.scope:
        lines.append(f"FLOPs of {s.scope}")
    if s.state:
        lines.append(f"state: {s.state:,} values ({total.state_bytes:,} bytes)")
    for m in s.memory:
        lines.append(f"executable ({m.platform}): {human_bytes(m.file_bytes)} on disk; memory: "
                     f"arguments {human_bytes(m.arguments)}, outputs {human_bytes(m.outputs)}, "
                     f"temporaries {human_bytes(m.temporaries)}, generated code "
                     f"{human_bytes(m.generated_code)}"
                     + (f", aliased {human_bytes(m.alias)}" if m.alias else "")
                     + f"; peak {human_bytes(m.peak)}")
    if s.disk_bytes is not None:
        lines.append(f"artifacts on disk: {human_bytes(s.disk_bytes)}")
    if s.note:
        lines.append(s.note)
    return "\n".join(lines)


__all__ = ["Cost", "Memory", "Row", "TargetSummary", "UnknownTarget", "format_summary",
           "memory_of", "resolve_file", "summarize", "summarize_target", "target_flops"]
