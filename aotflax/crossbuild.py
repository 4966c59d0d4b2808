"""The build's view of hardware it compiles for without having it: checks first, then words.

Before the build writes anything, `check` makes sure every TPU topology and
GPU target the build will compile for is one its cross-compiler accepts, with
the cross-compiler installed (`aotflax install-toolchain tpu`), and that each
target fits the hardware it names; a problem is a located error at the target
and nothing is written. After the compile, `native_and_export` reads a
target's manifest into the summary's words: which platforms got a native
executable, and which the export only, and why.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import hardware, toolchains
from .artifacts import read_regular
from .diagnostics import Diagnostic
from .program import TargetProgram

__all__ = ["Request", "check", "hardware_for", "hardware_key", "native_and_export"]


@dataclass(frozen=True)
class Request:
    """The hardware the command line names (`--tpu-topology`, `--gpu-target`, `--platform`)."""

    tpu_topologies: tuple[str, ...] = ()
    gpu_targets: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()


def hardware_for(t: TargetProgram, request: Request) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The TPU topologies and GPU targets one target is compiled for.

    What the target names itself wins; the command line's names go to targets
    that list the platform and name none (as `compile._options` decides).
    """
    wanted = [p for p in t.platforms if not request.platforms or p in request.platforms]
    tpu = t.tpu_topologies or (request.tpu_topologies if "tpu" in t.platforms else ())
    gpu = t.gpu_targets or (request.gpu_targets if "cuda" in t.platforms else ())
    return (tpu if "tpu" in wanted else ()), (gpu if "cuda" in wanted else ())


def hardware_key(t: TargetProgram, request: Request) -> list[list[str]]:
    """What one target is compiled for, as the build cache records it (JSON-ready)."""
    tpu, gpu = hardware_for(t, request)
    return [list(request.platforms), list(tpu), list(gpu)]


def check(targets: Iterable[TargetProgram], request: Request) -> list[Diagnostic]:
    """Every reason the build cannot compile for the hardware it names, before it writes.

    **Arguments:** `targets`: the targets to compile; `request`: the command line's names.

    **Returns:** diagnostics (empty when everything can be compiled for).
    """
    problems: list[Diagnostic] = []
    for name in request.tpu_topologies:
        try:
            hardware.parse_tpu_topology(name)
        except ValueError as error:
            problems.append(Diagnostic("AOT440", f"--tpu-topology: {error}", None))
    for name in request.gpu_targets:
        try:
            toolchains.gpu_target_config(name)
        except ValueError as error:
            problems.append(Diagnostic("AOT441", f"--gpu-target: {error}", None))
    if problems:
        return problems
    tpus: dict[str, list[TargetProgram]] = {}
    gpus: dict[str, list[TargetProgram]] = {}
    for t in targets:
        tpu, gpu = hardware_for(t, request)
        for name in tpu:
            tpus.setdefault(name, []).append(t)
            problems += _fits(t, hardware.parse_tpu_topology(name), name in t.tpu_topologies)
        for name in gpu:
            gpus.setdefault(name, []).append(t)
    problems += _toolchain_problems("tpu", tpus, _tpu_problem)
    problems += _toolchain_problems("cuda", gpus, _gpu_problem)
    return problems


def _fits(t: TargetProgram, topology: hardware.TpuTopology, own: bool) -> list[Diagnostic]:
    if t.devices <= topology.devices:
        return []
    where = "" if own else " (--tpu-topology)"
    return [Diagnostic("AOT440", f"target '{t.name}' runs on {t.devices} devices and TPU "
                       f"topology {topology.describe()}{where} has {topology.devices}", t.span,
                       hint="name a larger slice with tpu= on the target")]


def _tpu_problem(name: str) -> str | None:
    from .compile import tpu_topology_problem  # loads jax and libtpu: only when asked

    return tpu_topology_problem(name)


def _gpu_problem(name: str) -> str | None:
    from .compile import gpu_target_problem

    return gpu_target_problem(name)


def _toolchain_problems(platform: str, users: dict[str, list[TargetProgram]],
                        problem_of: Any) -> list[Diagnostic]:
    """The toolchain's absence, or its refusal of each name, at the first target using it."""
    if not users:
        return []
    first = min((t for ts in users.values() for t in ts), key=_order)
    missing = toolchains.missing(platform)
    if missing:
        return [Diagnostic("AOT450", missing, first.span if _named(first, platform) else None)]
    problems = []
    for name, ts in users.items():
        why = problem_of(name)
        if why:
            t = min(ts, key=_order)
            problems.append(Diagnostic("AOT451", why, t.span if _named(t, platform) else None))
    return problems


def _named(t: TargetProgram, platform: str) -> bool:
    """Whether the target names the hardware itself (then errors point at it)."""
    return bool(t.tpu_topologies if platform == "tpu" else t.gpu_targets)


def _order(t: TargetProgram) -> tuple[str, int]:
    return (t.span.path, t.span.line)


# --- words for the build output and the summary -------------------------------------


def native_and_export(folder: Path, platforms: Sequence[str]) -> tuple[str, str]:
    """A target's native executables and its export-only platforms, from its manifest.

    **Returns:** `("cpu, tpu v5e:2x2", "tpu: export only (no topology named)")`;
    "-" for an empty side, `("-", "-")` without a manifest.
    """
    try:
        manifest = json.loads(read_regular(folder / "manifest.json"))  # never a FIFO's wait
        executables: dict[str, Any] = dict(manifest.get("executables") or {})
        skipped: dict[str, Any] = dict(manifest.get("skipped") or {})
    except (OSError, ValueError, TypeError, AttributeError, RecursionError):
        return "-", "-"
    buckets = manifest.get("buckets") or {}
    native = list(dict.fromkeys(_native_words(key.split("@")[0], entry)
                                for key, entry in executables.items()))
    if buckets and isinstance(buckets, dict):
        # one executable per bucket size: "cpu (batch 1, 8, 32)"
        sizes = " x ".join(f"{d} {', '.join(map(str, v))}" for d, v in buckets.items())
        native = [f"{n} ({sizes})" for n in native]
    built = {str(entry.get("platform") or key.split(":")[0]) for key, entry in executables.items()
             if isinstance(entry, dict)}
    grouped: dict[str, list[str]] = {}  # one reason for several platforms is said once
    for p in platforms:
        if p not in built:
            grouped.setdefault(_export_words(skipped.get(p)), []).append(p)
    export = [f"{', '.join(ps)}: {words}" for words, ps in grouped.items()]
    return ", ".join(native) or "-", "; ".join(export) or "-"


def _export_words(reason: Any) -> str:
    """"export only (no topology named)"."""
    text = str(reason or "export only").split("; ")[0]  # the manifest keeps the hint
    return text if text.startswith("export only") else f"export only ({text})"


def _native_words(key: str, entry: Any) -> str:
    """"cpu", "tpu v5e:4x4 (4 hosts)", "cuda h100"."""
    platform, _, hw = key.partition(":")
    if not hw:
        return platform
    hosts = (entry.get("slice") or {}).get("hosts", 1) if isinstance(entry, dict) else 1
    return f"{platform} {hw}" + (f" ({hosts} hosts)" if hosts != 1 else "")
