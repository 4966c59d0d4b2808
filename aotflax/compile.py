"""The compile stage: a generated target becomes artifacts a host can load fast.

For one `Target` of an imported generated module, `compile_target` writes

- a portable `jax.export` artifact covering every platform the target names
  (StableHLO; symbolic dimensions where the target declares them); it still
  compiles on first call but survives jax upgrades;
- native executables (`jax.experimental.serialize_executable`): the local CPU
  always; one per TPU topology the target names (`tpu="v5e:2x2"`), through
  libtpu, pod slices included; one per GPU target (`gpu="h100"`), through jax's
  CUDA plugin. Loading one costs a file read instead of a trace and a compile;
- `manifest.json` describing both (see `aotflax.artifacts`).

The rng boundary: executables cannot take typed keys portably, so a
stochastic target's artifacts take one more positional argument after the
inputs, the raw key data (`jax.random.key_data(rng)`, uint32[2] for the
default threefry2x32), which the computation wraps back with
`jax.random.wrap_key_data(data, impl=...)`. The manifest records the key
implementation and shape; the runtime converts what users pass. An input
declared as a key (`aot.key`) crosses the boundary the same way: the artifacts
take its raw key data (`uint32[*shape, 2]`) and wrap it back, and the manifest
describes it by its key dtype, its implementation (`key_impl`) and its data
(`key_data`).

Hardware this host lacks is compiled for on compile-only devices
(`jax.experimental.topologies`); `aotflax.toolchains` finds the libtpu and CUDA
plugin that make them, and `_variants` decides what gets built: named hardware,
else this host's own devices, else the export only (said in the manifest's
`skipped`). A multi-device target is laid over the hardware's devices by
`jax.experimental.mesh_utils`, so its mesh follows the TPU torus.
"""

from __future__ import annotations

import inspect
import json
import linecache
import math
import os
import platform as _host
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import mesh_utils, serialize_executable
from jax.sharding import AbstractMesh, Mesh, NamedSharding, PartitionSpec

from aotflax import artifacts, cluster, hardware, toolchains

__all__ = [
    "CompileOptions",
    "CrossCompileError",
    "PlatformUnavailable",
    "build_key",
    "check_cluster_size",
    "compile_distributed",
    "compile_target",
    "compiled_memory",
    "gpu_target_problem",
    "memory_stats",
    "stale_reason",
    "tpu_topology_problem",
]

#: Platforms a target may name (jax.export's names).
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")

# CPU feature flags that decide whether an XLA:CPU executable runs on a host.
_ISA_FLAG = re.compile(r"^(avx|fma|sse|ssse|amx|f16c|bmi|sve|asimd)")


@dataclass(frozen=True)
class CompileOptions:
    """How to compile one target; every field is part of its build key."""

    #: Cap XLA:CPU at AVX2 (x86 only), so the executable runs on other x86
    #: hosts than the build machine; otherwise it needs the build host's ISA.
    xla_portable: bool = True
    #: TPU topologies to cross-compile for ("v5e:2x2"), through libtpu.
    tpu_topologies: tuple[str, ...] = ()
    #: GPU targets to cross-compile CUDA for: shipped names ("h100") or paths
    #: of GpuTargetConfig text protos.
    gpu_targets: tuple[str, ...] = ()


class PlatformUnavailable(Exception):
    """This build host cannot compile a native executable for a platform (the message says why)."""


class CrossCompileError(Exception):
    """Named hardware (a TPU topology, a GPU target) cannot be compiled for; the message says why.

    Unlike `PlatformUnavailable`, this fails the build: the user asked for that hardware.
    """


@dataclass(frozen=True)
class Variant:
    """One native executable to build: its manifest key, platform and named hardware."""

    #: "cpu", or "tpu:v5e:2x2", "cuda:h100" for cross-compiled hardware.
    key: str
    platform: str
    #: The topology or GPU target name; None for this host's own devices.
    hardware: str | None = None


# --- the executable boundary ---------------------------------------------------


def _rng_impl() -> str:
    # jax's Config defines its options at run time: no stub declares them
    return str(jax.config.jax_default_prng_impl)  # type: ignore[attr-defined]


def _key_spec(impl: str) -> jax.ShapeDtypeStruct:
    key = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0, impl=impl)))
    return jax.ShapeDtypeStruct(key.shape, key.dtype)


def boundary_function(target: Any, rng_impl: str) -> Callable[..., Any]:
    """The function the artifacts compute: `apply` with raw key data for rng.

    **Arguments:** `target`: a generated `Target`; `rng_impl`: the PRNG
    implementation the key data belongs to.

    **Returns:** `fn(params, state, *inputs[, key_data]) -> (outputs, new_state)`.
    """
    # (`Target.apply` wraps a key input's raw data back into a typed key, in trees too)
    if not target.stochastic:
        return lambda params, state, *inputs: target.apply(params, state, *inputs)

    def stochastic(params: Any, state: Any, *args: Any) -> Any:
        *inputs, key_data = args
        return target.apply(
            params,
            state,
            *inputs,
            rng=jax.random.wrap_key_data(key_data, impl=rng_impl),
        )

    return stochastic


def _key_inputs(target: Any) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Input array label -> (PRNG implementation, key data's trailing shape) of key inputs."""
    return dict(getattr(target, "key_inputs", None) or {})


def _inputs_at_boundary(target: Any, shape_of: Callable[[str, Any], Any]) -> list[Any]:
    """Each input's spec (a tree's rebuilt) as the artifacts take it, every array's
    shape given by `shape_of(label, spec)`."""
    return list(target.unflatten_inputs([
        _at_boundary(target, n, jax.ShapeDtypeStruct(shape_of(n, s), s.dtype))
        for n, s in target.leaves.items()]))


def _at_boundary(target: Any, name: str, spec: Any) -> jax.ShapeDtypeStruct:
    """An input's spec as the artifacts take it: a key input as its raw key data."""
    keys = _key_inputs(target)
    if name in keys:
        return jax.ShapeDtypeStruct((*spec.shape, *keys[name][1]), jnp.uint32)
    return jax.ShapeDtypeStruct(spec.shape, spec.dtype)


def _arg_specs(target: Any, key: jax.ShapeDtypeStruct | None) -> list[Any]:
    """(params, state, *inputs[, key]) as fixed-shape specs."""
    specs = [target.param_shapes, target.state_shapes,
             *_inputs_at_boundary(target, lambda n, s: s.shape)]
    return specs + ([key] if key is not None else [])


def _bucket_specs(target: Any, key: jax.ShapeDtypeStruct | None,
                  bucket: dict[str, int]) -> list[Any]:
    """Like `_arg_specs`, with every symbolic dimension at its size in `bucket`."""
    inputs = _inputs_at_boundary(target, lambda n, s: tuple(
        bucket[d] if isinstance(d, str) else d for d in target.symbolic.get(n, s.shape)))
    return [target.param_shapes, target.state_shapes, *inputs] + ([key] if key is not None
                                                                   else [])


def bucket_combinations(target: Any) -> list[dict[str, int]]:
    """Every combination of bucket sizes of a target (one native executable each), or
    `[{}]` for a target without buckets."""
    out: list[dict[str, int]] = [{}]
    for dim, sizes in (getattr(target, "buckets", None) or {}).items():
        out = [{**c, dim: n} for c in out for n in sizes]
    return out


def _export_specs(target: Any, key: jax.ShapeDtypeStruct | None) -> list[Any]:
    """Like `_arg_specs`, with the target's symbolic dimensions (one scope, so "batch" is one symbol).

    A target over several processes is exported with its shardings over an abstract
    mesh (no devices needed here): each process compiles the export for the global
    mesh and feeds it the shards it holds.
    """
    if _processes(target) > 1:
        axes = _mesh_axes(target, target.devices)
        mesh = AbstractMesh(tuple(axes.values()), tuple(axes))
        return _sharded(_arg_specs(target, key), len(target.inputs), mesh, target)
    scope = jax.export.SymbolicScope()

    def shape(name: str, spec: Any) -> Any:
        dims = target.symbolic.get(name)
        return spec.shape if dims is None else jax.export.symbolic_shape(
            ", ".join(map(str, dims)), scope=scope)

    inputs = _inputs_at_boundary(target, shape)
    return [target.param_shapes, target.state_shapes, *inputs] + (
        [key] if key is not None else []
    )


# --- devices to compile for ------------------------------------------------------


def _local_devices(platform: str) -> list[Any]:
    try:
        devices = jax.devices("gpu" if platform in ("cuda", "rocm") else platform)
    except RuntimeError:
        return []
    if platform in ("cuda", "rocm"):
        wanted = "rocm" if platform == "rocm" else "cuda"
        devices = [d for d in devices if wanted in d.client.platform_version.lower()]
    return list(devices)


def _variants(
    target: Any, platforms: Sequence[str], options: CompileOptions
) -> tuple[list[Variant], dict[str, str]]:
    """The native executables to build, and why a platform gets the export only.

    Named hardware comes first: a TPU topology or GPU target is compiled for
    even where this host has devices of that platform. Otherwise this host's
    own devices are used; a platform with neither gets the export only.

    **Returns:** `(variants, skipped)`; `skipped` maps platform -> reason.
    """
    variants: list[Variant] = []
    skipped: dict[str, str] = {}
    named = {"tpu": options.tpu_topologies, "cuda": options.gpu_targets}
    for platform in platforms:
        if target.symbolic and not getattr(target, "buckets", None):
            skipped[platform] = "export only (symbolic input dimensions, no buckets)"
        elif named.get(platform):
            variants += [Variant(_variant_key(platform, h), platform, h) for h in named[platform]]
        elif _local_devices(platform):
            variants.append(Variant(platform, platform))
        else:
            skipped[platform] = _NO_HARDWARE.get(platform, f"export only (no {platform} device "
                                                 "on this build host)")
    return variants, skipped


#: What a build says about a platform it has no devices or named hardware for.
_NO_HARDWARE = {
    "tpu": "export only (no topology named)",
    "cuda": "export only (no GPU target named)",
}


def _variant_key(platform: str, hardware: str) -> str:
    """"tpu:v5e:2x2", "cuda:h100" ("cuda:<file stem>" for a config given by path)."""
    name = Path(hardware).stem if platform == "cuda" and "/" in hardware else hardware
    return f"{platform}:{name}"


@lru_cache(maxsize=None)
def _tpu_slice(name: str) -> tuple[hardware.TpuTopology, tuple[Any, ...]]:
    """A TPU topology and its compile-only devices from libtpu (cached per process)."""
    topology = hardware.parse_tpu_topology(name)
    options: dict[str, Any] = {}
    if topology.host_bounds != topology.generation.host_bounds:
        # smaller than one host (v5e:1x1): libtpu's default host would not divide it
        options["chips_per_host_bounds"] = topology.host_bounds
    devices = toolchains.load_libtpu(topology.name, **options)
    return topology, tuple(devices)


def tpu_topology_problem(name: str) -> str | None:
    """Why this host cannot compile for a TPU topology (libtpu missing or refusing it), or None.

    The driver calls this before it writes anything, so a bad name fails the
    build with nothing changed.
    """
    try:
        _tpu_slice(name)
    except (ValueError, toolchains.ToolchainMissing) as error:
        return _tpu_message(name, error)
    return None


def _tpu_message(name: str, error: Exception) -> str:
    if isinstance(error, toolchains.ToolchainMissing):
        return str(error)
    return f"libtpu does not know TPU topology {name!r}: {error}"


def gpu_target_problem(name: str) -> str | None:
    """Why this host cannot compile for a GPU target (no CUDA plugin, bad description), or None."""
    try:
        _cuda_devices(name, 1)
    except (ValueError, toolchains.ToolchainMissing) as error:
        return str(error)
    return None


@lru_cache(maxsize=None)
def _cuda_devices(name: str, count: int) -> tuple[Any, ...]:
    label, config = toolchains.gpu_target_config(name)
    try:
        return tuple(toolchains.load_cuda_devices(config, count))
    except ValueError as error:
        raise ValueError(f"jax's CUDA plugin refused GPU target {label!r}: {error}") from None


def _pick(devices: Sequence[Any], count: int) -> list[Any]:
    """`count` devices, whole hosts first (a 4-device target on a 4-host slice stays on host 0)."""
    return sorted(devices, key=lambda d: (d.process_index, d.id))[:count]


def _cross_devices(
    variant: Variant, count: int, processes: int = 1
) -> tuple[list[Any], dict[str, Any]]:
    """Compile-only devices for named hardware, and what the manifest records about them.

    **Raises:** `CrossCompileError` when the toolchain is missing, it refuses
    the name, the hardware has fewer devices than the target needs, or (for a
    target over several processes) its devices are not on that many hosts.
    """
    assert variant.hardware is not None
    if variant.platform == "tpu":
        try:
            topology, devices = _tpu_slice(variant.hardware)
        except (ValueError, toolchains.ToolchainMissing) as error:
            raise CrossCompileError(_tpu_message(variant.hardware, error)) from None
        if len(devices) < count:
            raise CrossCompileError(f"the target runs on {count} devices and TPU topology "
                                    f"{topology.describe()} has {len(devices)}")
        hosts = len({d.process_index for d in _pick(devices, count)})
        if processes > 1 and hosts != processes:
            raise CrossCompileError(f"the target spans processes={processes}, and its {count} "
                                    f"devices of TPU topology {topology.describe()} are on "
                                    f"{hosts} host{'s' if hosts != 1 else ''} (one process "
                                    "each)")
        return _pick(devices, count), {"topology": topology.name, "slice": _slice_json(topology),
                                       "toolchain": toolchains.version("tpu")}
    if processes > 1:
        raise CrossCompileError(f"GPU target {variant.hardware!r}: executables over several "
                                "processes are not cross-compiled for GPUs; drop gpu= (the "
                                "export covers cuda) or processes=")
    try:
        devices = _cuda_devices(variant.hardware, count)
    except (ValueError, toolchains.ToolchainMissing) as error:
        raise CrossCompileError(str(error)) from None
    label, config = toolchains.gpu_target_config(variant.hardware)
    return list(devices), {"gpu_target": label, "gpu_target_sha256": artifacts.sha256_bytes(
        config.encode()), "toolchain": toolchains.version("cuda")}


def _slice_json(topology: hardware.TpuTopology) -> dict[str, Any]:
    return {
        "name": topology.name,
        "bounds": list(topology.bounds),
        "chips": topology.chips,
        "devices": topology.devices,
        "hosts": topology.hosts,
        "chips_per_host": list(topology.host_bounds),
    }


def _devices_json(devices: Sequence[Any]) -> dict[str, Any]:
    """The devices an executable runs on, in its device order, and which host owns which."""
    listed = [
        {"id": d.id, "process_index": d.process_index,
         **({"coords": list(d.coords), "core_on_chip": d.core_on_chip}
            if d.platform == "tpu" else {})}
        for d in devices
    ]
    hosts: dict[str, list[int]] = {}
    for d in sorted(devices, key=lambda d: (d.process_index, d.id)):
        hosts.setdefault(str(d.process_index), []).append(d.id)
    return {"devices": listed, "hosts": hosts}


def _host_devices(platform: str, count: int) -> list[Any]:
    """`count` of this host's devices of a platform, or `PlatformUnavailable`."""
    devices = _local_devices(platform)
    if len(devices) < count:
        hint = (
            f"; set XLA_FLAGS=--xla_force_host_platform_device_count={count}"
            if platform == "cpu"
            else ""
        )
        raise PlatformUnavailable(
            f"the target needs {count} {platform} devices and {len(devices)} are available{hint}"
        )
    return devices[:count]


def _processes(target: Any) -> int:
    return int(getattr(target, "processes", 1) or 1)


def _mesh_axes(target: Any, count: int) -> dict[str, int]:
    """The target's mesh axes (name -> size); one "data" axis when it names none."""
    return dict(getattr(target, "mesh", None) or {}) or {"data": count}


def _process_mesh(devices: list[Any], axes: dict[str, int]) -> Mesh:
    """A mesh over several processes: devices in process order along the first axis.

    Each process then holds one contiguous block of the first (data) axis, so its
    share of a batch is whole rows, the process-local shard it passes.
    """
    ordered = sorted(devices, key=lambda d: (d.process_index, d.id))
    return Mesh(np.array(ordered).reshape(tuple(axes.values())), tuple(axes))


def _mesh(devices: list[Any], axes: dict[str, int]) -> Mesh:
    """The target's mesh over `devices`, laid out by jax for the hardware's interconnect."""
    shape = tuple(axes.values())
    try:
        grid = mesh_utils.create_device_mesh(shape, devices)
    except (ValueError, NotImplementedError, AssertionError):
        # a part of a slice that jax cannot map onto the torus: plain device order
        grid = np.array(devices).reshape(shape)
    return Mesh(grid, tuple(axes))


def _placed(
    specs: list[Any], inputs: int, devices: list[Any], target: Any = None
) -> tuple[list[Any], list[Any]]:
    """Specs with shardings: one device, or data parallel over the inputs' first axis
    with parameters partitioned by the target's `param_sharding` over its `mesh`.

    **Returns:** `(specs, devices in the executable's device order)`.
    """
    if len(devices) == 1:
        single = jax.sharding.SingleDeviceSharding(devices[0])
        return jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=single), specs
        ), devices
    axes = _mesh_axes(target, len(devices))
    mesh = _process_mesh(devices, axes) if _processes(target) > 1 else _mesh(devices, axes)
    return _sharded(specs, inputs, mesh, target), list(mesh.devices.flat)


def _sharded(specs: list[Any], inputs: int, mesh: Any, target: Any) -> list[Any]:
    """`(params, state, *inputs[, key])` specs with shardings over `mesh` (or an
    `AbstractMesh`): inputs split along their first axis over the mesh's first axis,
    parameters by `param_sharding`, everything else replicated."""
    data_axis = mesh.axis_names[0]
    data_size = dict(mesh.shape)[data_axis]
    replicated = NamedSharding(mesh, PartitionSpec())

    def batch(spec: Any) -> Any:
        split = spec.ndim > 0 and spec.shape[0] % data_size == 0
        sharding = NamedSharding(mesh, PartitionSpec(data_axis)) if split else replicated
        return jax.ShapeDtypeStruct(spec.shape, spec.dtype, sharding=sharding)

    placed = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), specs
    )
    rules = getattr(target, "param_sharding", None) or {}
    if rules:
        placed[0] = jax.tree_util.tree_map_with_path(
            lambda path, s: jax.ShapeDtypeStruct(
                s.shape, s.dtype, sharding=NamedSharding(
                    mesh, PartitionSpec(*_rule_for(rules, path)))), specs[0])
    placed[2 : 2 + inputs] = [jax.tree.map(batch, s) for s in specs[2 : 2 + inputs]]
    return placed


def _rule_for(rules: Any, path: Any) -> tuple[Any, ...]:
    """The partition spec at `path` in the param_sharding tree (() = replicated)."""
    node = rules
    for entry in path:
        key = getattr(entry, "key", None)
        if not isinstance(node, dict) or key not in node:
            return ()
        node = node[key]
    return tuple(node) if isinstance(node, (tuple, list)) else ()


# --- CPU portability -------------------------------------------------------------


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(("flags", "Features")):
                    return sorted(
                        f for f in line.split(":", 1)[1].split() if _ISA_FLAG.match(f)
                    )
    except OSError:
        pass
    return []


def _cpu_max_isa(options: CompileOptions) -> str | None:
    portable = options.xla_portable and _host.machine().lower() in ("x86_64", "amd64")
    return "AVX2" if portable else None


def _compiler_options(platform: str, options: CompileOptions) -> dict[str, str | bool]:
    if platform == "cpu" and (isa := _cpu_max_isa(options)):
        # Per-compile option, so the build need not set XLA_FLAGS before jax starts.
        return {"xla_cpu_max_isa": isa}
    return {}


def _cpu_info(options: CompileOptions) -> dict[str, Any]:
    isa = _cpu_max_isa(options)
    return {
        "machine": _host.machine(),
        "max_isa": isa,
        "features": [] if isa else _cpu_flags(),
    }


# --- compiling ---------------------------------------------------------------------


def _compile_native(
    variant: Variant,
    fn: Callable[..., Any],
    specs: list[Any],
    target: Any,
    options: CompileOptions,
) -> tuple[bytes, dict[str, Any], Any]:
    """Compiles and serializes one native executable.

    **Returns:** `(payload, manifest entry fields, out_tree)`.
    """
    platform = variant.platform
    extra: dict[str, Any] = {}
    processes = _processes(target)
    if variant.hardware is None and processes > 1 and jax.process_count() != processes:
        if platform != "cpu":
            raise PlatformUnavailable(f"a {platform} executable over {processes} processes is "
                                      "compiled on its hosts; the export covers it")
        return _compile_on_cluster(target, options)
    if variant.hardware is None:
        devices = _host_devices(platform, target.devices)
    else:
        devices, extra = _cross_devices(variant, target.devices, processes)
    compiler_options = _compiler_options(platform, options)
    placed, order = _placed(specs, len(target.inputs), devices, target)
    compiled = jax.jit(fn, donate_argnums=_donated(target)).lower(*placed).compile(
        compiler_options or None)
    payload, _, out_tree = serialize_executable.serialize(compiled)
    info: dict[str, Any] = {
        "platform": platform,
        "device_kind": order[0].device_kind,
        "device_count": len(order),
        "topology": None,
        "compiler_options": compiler_options,
        **extra,
    }
    memory = memory_stats(compiled)
    if memory is not None:
        info["memory"] = memory
    if variant.hardware is not None or processes > 1:
        info.update(_devices_json(order))
    if processes > 1:
        info["processes"] = processes
    if platform == "cpu":
        # jax#28908: the loader initialises LAPACK first only when it is used (it costs ~80 ms).
        info["needs_lapack"] = "lapack_" in (compiled.as_text() or "")
        info["cpu"] = _cpu_info(options)
    return payload, info, out_tree


#: Seconds a multi-process compile on the loopback address may take.
CLUSTER_TIMEOUT = float(os.environ.get("AOTFLAX_CLUSTER_TIMEOUT", "900"))
#: Most processes, and most forced CPU devices in all, that run may start on the build
#: host: the numbers come from a model file, which must not fork the machine to death.
CLUSTER_MAX_PROCESSES = int(os.environ.get("AOTFLAX_CLUSTER_MAX_PROCESSES", "8"))
CLUSTER_MAX_DEVICES = int(os.environ.get("AOTFLAX_CLUSTER_MAX_DEVICES", "64"))
#: Suffix of a training target's train-step view (`Target.train_view`).
_TRAIN_STEP = "__train_step"


def _compile_on_cluster(target: Any, options: CompileOptions) -> tuple[bytes, dict[str, Any], Any]:
    """The CPU executable of a target over several processes, compiled by a local run.

    XLA:CPU compiles a multi-process program only inside a `jax.distributed` run, so
    the build starts one on 127.0.0.1 (`aotflax.cluster`): `target.processes`
    processes with their share of forced CPU devices each, every one running
    `compile_distributed` on the generated module; process 0 writes the result.

    **Raises:** `PlatformUnavailable` when the run fails (the export then covers cpu).
    """
    check_cluster_size(_processes(target), target.devices)
    root, module = _generated_package(target)
    base = target.name[: -len(_TRAIN_STEP)] if target.name.endswith(_TRAIN_STEP) else target.name
    view = "train_step" if base != target.name else "apply"
    env = dict(os.environ)
    # the workers import this aotflax, whatever the caller's working directory
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent), *filter(None, [env.get("PYTHONPATH")])])
    with tempfile.TemporaryDirectory(prefix="aotflax-compile-") as out:
        argv = [sys.executable, "-m", "aotflax.compile_worker", str(root), module, base, view,
                out, "portable" if options.xla_portable else "native"]
        try:
            cluster.run(argv, _processes(target),
                        devices_per_process=target.devices // _processes(target),
                        timeout=CLUSTER_TIMEOUT, env=env)
        except cluster.ClusterError as error:
            raise PlatformUnavailable(f"the {_processes(target)}-process compile on the "
                                      f"loopback address failed: {error}") from None
        payload = (Path(out) / "executable").read_bytes()
        info = json.loads((Path(out) / "info.json").read_text(encoding="utf-8"))
    return payload, info, None


def check_cluster_size(processes: int, devices: int) -> None:
    """`PlatformUnavailable` when a local run of `processes` processes with `devices` CPU
    devices in all is more than the build host is allowed to start (the export then
    covers cpu)."""
    if processes > CLUSTER_MAX_PROCESSES or devices > CLUSTER_MAX_DEVICES:
        raise PlatformUnavailable(
            f"a {processes}-process compile with {devices} CPU devices is more than the "
            f"build host starts: at most {CLUSTER_MAX_PROCESSES} processes and "
            f"{CLUSTER_MAX_DEVICES} devices, AOTFLAX_CLUSTER_MAX_PROCESSES and "
            "AOTFLAX_CLUSTER_MAX_DEVICES raise them")


def _generated_package(target: Any) -> tuple[Path, str]:
    """The generated package a target was imported from, and its module in it."""
    file = getattr(sys.modules.get(target.init_fn.__module__), "__file__", None)
    if file is None:
        raise PlatformUnavailable(f"{target.name}: its generated module is not a file, so no "
                                  "other process can import it")
    root = Path(file).resolve().parent
    for _ in range(target.module.count(".")):
        root = root.parent
    return root, target.module


def compile_distributed(target: Any, *, xla_portable: bool = True) -> tuple[bytes, dict[str, Any]]:
    """The CPU executable of a target over several processes, in one process of the run.

    Every process of a `jax.distributed` run with `target.processes` processes calls
    this (`python -m aotflax.compile_worker`); they compile the same program over all
    their devices.

    **Returns:** `(serialized executable, its manifest entry fields)`.
    """
    impl = _rng_impl()
    key = _key_spec(impl) if target.stochastic else None
    payload, info, _ = _compile_native(Variant("cpu", "cpu"), boundary_function(target, impl),
                                       _arg_specs(target, key), target,
                                       CompileOptions(xla_portable))
    return payload, info


def compiled_memory(
    target: Any, options: CompileOptions | None = None
) -> dict[str, int] | None:
    """XLA's memory statistics of a target's CPU executable as the build compiles it.

    The same program, shardings, donation and compiler options as its native
    executable, compiled in this process and not written (`bench/memory.py`).

    **Returns:** `memory_stats` of the compiled executable.
    """
    impl = _rng_impl()
    fn = boundary_function(target, impl)
    specs = _arg_specs(target, _key_spec(impl) if target.stochastic else None)
    placed, _ = _placed(specs, len(target.inputs), _host_devices("cpu", target.devices), target)
    compiled = jax.jit(fn, donate_argnums=_donated(target)).lower(*placed).compile(
        _compiler_options("cpu", options or CompileOptions()) or None)
    return memory_stats(compiled)


def memory_stats(compiled: Any) -> dict[str, int] | None:
    """XLA's `memory_analysis()` of an executable, in bytes (None where a backend has none).

    `peak` counts everything the executable holds during a call: arguments +
    outputs + temporaries, less the outputs that alias (donated) arguments; or
    XLA's own peak where that is larger. XLA:CPU's `peak_memory_in_bytes` leaves
    the temporaries out (measured with jax 0.10.2: a function with a 512 KiB
    temporary reports arguments + outputs), so it is never taken alone.
    """
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - a backend without the statistics: none recorded
        return None
    if stats is None:
        return None
    out = {
        "arguments": stats.argument_size_in_bytes,
        "outputs": stats.output_size_in_bytes,
        "temporaries": stats.temp_size_in_bytes,
        "generated_code": stats.generated_code_size_in_bytes,
        "alias": stats.alias_size_in_bytes,
    }
    held = out["arguments"] + out["outputs"] + out["temporaries"] - out["alias"]
    out["peak"] = max(getattr(stats, "peak_memory_in_bytes", 0) or 0, held)
    return {k: int(v) for k, v in out.items()}


def _export(
    fn: Callable[..., Any], specs: list[Any], platforms: Sequence[str], target: Any = None
) -> jax.export.Exported:
    jitted = jax.jit(fn, donate_argnums=_donated(target) if target is not None else ())
    return jax.export.export(jitted, platforms=tuple(platforms))(*specs)


def _donated(target: Any) -> tuple[int, ...]:
    """The arguments the artifacts consume: a train step's params and packed state.

    XLA aliases them with the outputs, so a step holds one copy of the parameters and
    optimizer state instead of two; the loader marks them donated for the export too.
    """
    return tuple(getattr(target, "donate_argnums", ()) or ())


def _generated_sha256(target: Any) -> str | None:
    try:
        source = inspect.getsourcefile(target.apply_fn)
    except TypeError:
        return None
    if not source:
        return None
    try:
        return artifacts.sha256_file(Path(source))
    except OSError:  # imported from a folder since removed (aotflax.verify.import_generated)
        text = "".join(linecache.getlines(source))
        return artifacts.sha256_bytes(text.encode()) if text else None


def build_key(
    target: Any, platforms: Sequence[str], options: CompileOptions
) -> dict[str, Any]:
    """Everything a target's artifacts depend on; a change in any field means a rebuild.

    **Arguments:** `target`: a generated `Target`; `platforms`: the platforms
    to build native executables for; `options`: the compile options.

    **Returns:** a JSON-ready dict (stored in the manifest as `build_key`).
    """
    return {
        "source_sha256": target.source_sha256,
        "generated_sha256": _generated_sha256(target),
        "aotflax_version": artifacts.aotflax_version(),
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__,
        "platforms": sorted(platforms),
        "export_platforms": sorted(target.platforms),
        "xla_portable": options.xla_portable,
        "tpu_topologies": list(options.tpu_topologies),
        "gpu_targets": [
            [name, artifacts.sha256_bytes(toolchains.gpu_target_config(name)[1].encode())]
            for name in options.gpu_targets
        ],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "rng_impl": _rng_impl() if target.stochastic or _key_inputs(target) else None,
    }


def _resolve(target: Any, platforms: Sequence[str] | None) -> tuple[str, ...]:
    chosen = tuple(platforms if platforms is not None else target.platforms)
    unknown = [p for p in chosen if p not in PLATFORMS]
    if unknown or not chosen:
        raise ValueError(
            f"{target.name}: unknown platform(s) {unknown or chosen}; expected some of {PLATFORMS}"
        )
    return chosen


def _options(
    target: Any, xla_portable: bool, tpu_topologies: Sequence[str], gpu_targets: Sequence[str]
) -> CompileOptions:
    """The compile options of one target: the hardware it names itself wins over the
    command line's (`--tpu-topology` names it for targets that name none)."""
    own_tpu = tuple(getattr(target, "tpu_topologies", ()) or ())
    own_gpu = tuple(getattr(target, "gpu_targets", ()) or ())
    tpu = own_tpu or (tuple(tpu_topologies) if "tpu" in target.platforms else ())
    gpu = own_gpu or (tuple(gpu_targets) if "cuda" in target.platforms else ())
    return CompileOptions(xla_portable, tpu, gpu)


def stale_reason(
    target: Any,
    out_dir: Path,
    *,
    platforms: Sequence[str] | None = None,
    xla_portable: bool = True,
    tpu_topologies: Sequence[str] = (),
    gpu_targets: Sequence[str] = (),
) -> str | None:
    """Why `compile_target` would rebuild this target, or None when its artifacts are current.

    Cheap (no trace, no hashing of artifacts), so a no-change build does no work.

    **Arguments:** as `compile_target`.

    **Returns:** a reason, or None.
    """
    options = _options(target, xla_portable, tpu_topologies, gpu_targets)
    folder = artifacts.target_folder(out_dir, target.module, target.name)
    return artifacts.stale_reason(
        folder, build_key(target, _resolve(target, platforms), options)
    )


def compile_target(
    target: Any,
    out_dir: Path,
    *,
    platforms: Sequence[str] | None = None,
    xla_portable: bool = True,
    tpu_topologies: Sequence[str] = (),
    gpu_targets: Sequence[str] = (),
    sign_key: bytes | None = None,
) -> dict[str, Any]:
    """Exports, compiles and writes the artifacts of one target.

    **Arguments:**
    - `target`: a `Target` of an imported generated module.
    - `out_dir`: the artifacts root (`generated/artifacts`); files go to
      `out_dir/<module path>/<target name>/`.
    - `platforms`: platforms to build native executables for (default: the
      target's); the export always covers every platform the target names.
    - `xla_portable`: cap XLA:CPU at AVX2 so the executable runs on other x86 hosts.
    - `tpu_topologies`, `gpu_targets`: hardware to cross-compile for, for a
      target that lists the platform and names none itself (`tpu=`, `gpu=`).
    - `sign_key`: sign the manifest with this HMAC key (`artifacts.signing_key`).

    **Returns:** the manifest written. Platforms that get no native executable
    are listed under `skipped` with the reason; the export covers them.

    **Raises:** `CrossCompileError` when named hardware cannot be compiled for.
    """
    chosen = _resolve(target, platforms)
    options = _options(target, xla_portable, tpu_topologies, gpu_targets)
    impl = _rng_impl()
    key = _key_spec(impl) if target.stochastic else None
    fn = boundary_function(target, impl)
    exported = _export(fn, _export_specs(target, key), _resolve(target, None), target)
    export_bytes = bytes(exported.serialize())
    payloads, entries, skipped = _native_executables(
        target, fn, key, chosen, options, exported.out_tree
    )
    export_entry = artifacts.file_entry(
        artifacts.artifact_file_name("export", artifacts.sha256_bytes(export_bytes)),
        export_bytes,
        platforms=list(exported.platforms),
        target=_qualified(target),
    )
    outputs = jax.tree_util.tree_unflatten(exported.out_tree, exported.out_avals)
    manifest = {
        "format_version": artifacts.FORMAT_VERSION,
        "target": target.name,
        "module": target.module,
        "source_sha256": target.source_sha256,
        "generated_sha256": _generated_sha256(target),
        "aotflax_version": artifacts.aotflax_version(),
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__,
        "build_key": build_key(target, chosen, options),
        "inputs": _inputs_json(target),
        "outputs": artifacts.tree_to_json(outputs),
        "param_count": sum(
            math.prod(leaf.shape) for leaf in jax.tree.leaves(target.param_shapes)
        ),
        "rng": None if key is None else {"impl": impl, "key_shape": list(key.shape)},
        "donate_argnums": list(_donated(target)),
        "processes": _processes(target),
        "mesh": [[name, size] for name, size in _mesh_axes(target, target.devices).items()],
        "executables": entries,
        "buckets": {d: list(v) for d, v in (getattr(target, "buckets", None) or {}).items()},
        "skipped": skipped,
        "export": export_entry,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    folder = artifacts.target_folder(out_dir, target.module, target.name)
    _write(out_dir, folder, manifest, payloads, export_bytes, sign_key)
    return manifest


def _qualified(target: Any) -> str:
    """`module.target`: what a manifest entry binds its file to."""
    return f"{target.module}.{target.name}"


def _flat_arguments(specs: list[Any]) -> list[dict[str, Any]]:
    """The executable's flat argument signature, as the runtime's binding check reads it."""
    return [artifacts.spec_to_json(leaf) for leaf in jax.tree.leaves(specs)]


def _inputs_json(target: Any) -> dict[str, Any]:
    """Each input's declared shape and dtype; a key input's dtype is jax's key type name
    (`key<fry>`), with its implementation and the raw data the artifacts take."""
    keys = _key_inputs(target)
    leaves: list[dict[str, Any]] = []
    for name, spec in target.leaves.items():
        shape = [d if isinstance(d, int) else str(d)
                 for d in target.symbolic.get(name, spec.shape)]
        if name not in keys:
            leaves.append({"shape": shape, "dtype": jnp.dtype(spec.dtype).name})
            continue
        impl, tail = keys[name]
        leaves.append({"shape": shape, "dtype": str(spec.dtype), "key_impl": impl,
                       "key_data": {"shape": [*shape, *tail], "dtype": "uint32"}})
    # a tree input is a tree node of `artifacts.tree_to_json` with these leaves
    inputs = target.unflatten_inputs([_Leaf(leaf) for leaf in leaves])
    return {name: _tree_json(value) for name, value in zip(target.inputs, inputs)}


class _Leaf:
    """An input's manifest entry, standing as a leaf of its tree."""

    def __init__(self, entry: dict[str, Any]) -> None:
        self.entry = entry


def _tree_json(tree: Any) -> Any:
    """A tree input's manifest node: `artifacts.tree_to_json`'s, its leaves the inputs'."""
    if isinstance(tree, _Leaf):
        return tree.entry
    if isinstance(tree, dict):
        return {"dict": {k: _tree_json(v) for k, v in tree.items()}}
    return {type(tree).__name__: [_tree_json(v) for v in tree]}


def _native_executables(
    target: Any,
    fn: Callable[..., Any],
    key: jax.ShapeDtypeStruct | None,
    platforms: Sequence[str],
    options: CompileOptions,
    out_tree: Any,
) -> tuple[dict[str, bytes], dict[str, dict[str, Any]], dict[str, str]]:
    """Compiles every native executable this host can build: one per variant, and per
    bucket size (combination) of a bucketed target.

    **Returns:** `(payloads, entries, skipped)`: payloads and manifest entries
    by key ("cpu", "tpu:v5e:2x2", "cpu@batch=8"), and platform -> why it has none.
    """
    payloads: dict[str, bytes] = {}
    entries: dict[str, dict[str, Any]] = {}
    variants, skipped = _variants(target, platforms, options)
    for variant in variants:
        for bucket in bucket_combinations(target):
            specs = _bucket_specs(target, key, bucket) if bucket else _arg_specs(target, key)
            try:
                payload, info, tree = _compile_native(variant, fn, specs, target, options)
            except PlatformUnavailable as reason:
                skipped[variant.platform] = str(reason)
                break
            if tree is not None and tree != out_tree:  # the runtime rebuilds it from the manifest
                raise AssertionError(
                    f"internal error: {target.name} on {variant.key}: {tree} != {out_tree}"
                )
            entry_key = variant.key + ("@" + ",".join(f"{d}={n}" for d, n in bucket.items())
                                       if bucket else "")
            payloads[entry_key] = payload
            kind = "executable-" + re.sub(r"[^a-z0-9]+", "-", entry_key.lower()).strip("-")
            name = artifacts.artifact_file_name(kind, artifacts.sha256_bytes(payload))
            if bucket:
                info = {**info, "bucket": dict(bucket)}
            entries[entry_key] = artifacts.file_entry(
                name, payload, target=_qualified(target), arguments=_flat_arguments(specs),
                **info
            )
    return payloads, entries, skipped


def _write(
    out_dir: Path,
    folder: Path,
    manifest: dict[str, Any],
    payloads: dict[str, bytes],
    export_bytes: bytes,
    sign_key: bytes | None,
) -> None:
    """Writes payloads first and the manifest (and its signature) last, then drops files
    of older builds; never through a symbolic link below `out_dir`."""
    artifacts.real_folder(out_dir, folder)
    for key, payload in payloads.items():
        artifacts.write_atomic(folder / manifest["executables"][key]["file"], payload)
    artifacts.write_atomic(folder / manifest["export"]["file"], export_bytes)
    artifacts.write_manifest(folder, manifest, sign_key)
    artifacts.remove_unreferenced(folder, manifest)
