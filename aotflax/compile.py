"""The compile stage: a generated target becomes artifacts a host can load fast.

For one `Target` of an imported generated module, `compile_target` writes

- a portable `jax.export` artifact covering every platform the target names
  (StableHLO; symbolic dimensions where the target declares them); it still
  compiles on first call but survives jax upgrades;
- a native executable per platform this build host can compile for
  (`jax.experimental.serialize_executable`): the local CPU always, a TPU
  topology through libtpu, a CUDA GPU through a GPU target config. Loading it
  costs a file read instead of a trace and a compile;
- `manifest.json` describing both (see `aotflax.artifacts`).

The rng boundary: executables cannot take typed keys portably, so a
stochastic target's artifacts take one more positional argument after the
inputs, the raw key data (`jax.random.key_data(rng)`, uint32[2] for the
default threefry2x32), which the computation wraps back with
`jax.random.wrap_key_data(data, impl=...)`. The manifest records the key
implementation and shape; the runtime converts what users pass.

Cross-compilers plug in through `_CROSS_DEVICES`, a table from platform to a
function giving compile-only devices: add a platform by adding a row.
"""

from __future__ import annotations

import inspect
import linecache
import math
import os
import platform as _host
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import serialize_executable
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from aotflax import artifacts

__all__ = [
    "CompileOptions",
    "PlatformUnavailable",
    "build_key",
    "compile_target",
    "stale_reason",
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
    #: TPU topology to cross-compile for ("v5e:2x2"), through libtpu.
    tpu_topology: str | None = None
    #: Path of a GpuTargetConfig text proto to cross-compile CUDA for.
    cuda_target_config: str | None = None


class PlatformUnavailable(Exception):
    """This build host cannot compile a native executable for a platform (the message says why)."""


# --- the executable boundary ---------------------------------------------------


def _rng_impl() -> str:
    return str(jax.config.jax_default_prng_impl)


def _key_spec(impl: str) -> jax.ShapeDtypeStruct:
    key = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0, impl=impl)))
    return jax.ShapeDtypeStruct(key.shape, key.dtype)


def boundary_function(target: Any, rng_impl: str) -> Callable[..., Any]:
    """The function the artifacts compute: `apply` with raw key data for rng.

    **Arguments:** `target`: a generated `Target`; `rng_impl`: the PRNG
    implementation the key data belongs to.

    **Returns:** `fn(params, state, *inputs[, key_data]) -> (outputs, new_state)`.
    """
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


def _plain(spec: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(spec.shape, spec.dtype)


def _arg_specs(target: Any, key: jax.ShapeDtypeStruct | None) -> list[Any]:
    """(params, state, *inputs[, key]) as fixed-shape specs."""
    specs = [
        target.param_shapes,
        target.state_shapes,
        *(_plain(s) for s in target.inputs.values()),
    ]
    return specs + ([key] if key is not None else [])


def _export_specs(target: Any, key: jax.ShapeDtypeStruct | None) -> list[Any]:
    """Like `_arg_specs`, with the target's symbolic dimensions (one scope, so "batch" is one symbol)."""
    scope = jax.export.SymbolicScope()
    inputs = []
    for name, spec in target.inputs.items():
        dims = target.symbolic.get(name)
        shape = (
            spec.shape
            if dims is None
            else jax.export.symbolic_shape(", ".join(map(str, dims)), scope=scope)
        )
        inputs.append(jax.ShapeDtypeStruct(shape, spec.dtype))
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


def _tpu_topology_devices(options: CompileOptions) -> tuple[list[Any], str]:
    if options.tpu_topology is None:
        raise PlatformUnavailable(
            "no TPU on this host and no TPU topology named (tpu_topology='v5e:2x2')"
        )
    if find_spec("libtpu") is None and "TPU_LIBRARY_PATH" not in os.environ:
        raise PlatformUnavailable(
            f"cross-compiling for TPU needs libtpu: pip install 'jax[tpu]=={jax.__version__}' (aotflax[tpu])"
        )
    from jax.experimental import topologies

    try:
        topology = topologies.get_topology_desc(options.tpu_topology, "tpu")
    except (RuntimeError, NotImplementedError, ValueError) as error:
        raise PlatformUnavailable(
            f"libtpu refused topology {options.tpu_topology!r}: {error}"
        ) from None
    return list(topology.devices), options.tpu_topology


def _cuda_target_devices(options: CompileOptions) -> tuple[list[Any], str]:
    # TODO(cuda): untested here (no jax[cuda12] on the build machines). This is
    # the path the issue reports working: JAX_PLATFORMS=cpu, the CUDA plugin
    # installed, and a GpuTargetConfig text proto of the GPU model.
    if options.cuda_target_config is None:
        raise PlatformUnavailable(
            "no CUDA GPU on this host and no GPU target config named (cuda_target_config=PATH)"
        )
    if find_spec("jax_cuda12_plugin") is None:
        raise PlatformUnavailable(
            f"cross-compiling for CUDA needs the CUDA plugin: pip install 'jax[cuda12]=={jax.__version__}' (aotflax[cuda])"
        )
    from jax.experimental import topologies

    config = Path(options.cuda_target_config).read_text(encoding="utf-8")
    try:
        # The call the issue reports working (topology as an option, not a name).
        topology = topologies.get_topology_desc(
            platform="cuda", target_config=config, topology="1x1x1"
        )
    except (RuntimeError, NotImplementedError, ValueError) as error:
        raise PlatformUnavailable(
            f"the CUDA plugin refused target config {options.cuda_target_config}: {error}"
        ) from None
    return list(topology.devices), "1x1x1"


#: Platform -> compile-only devices for hardware this host lacks.
_CROSS_DEVICES: dict[str, Callable[[CompileOptions], tuple[list[Any], str]]] = {
    "tpu": _tpu_topology_devices,
    "cuda": _cuda_target_devices,
}


def _devices_for(
    platform: str, count: int, options: CompileOptions
) -> tuple[list[Any], str | None]:
    """`count` devices to compile for, real ones when present, and the topology name if cross-compiled."""
    devices, topology = _local_devices(platform), None
    if not devices and platform in _CROSS_DEVICES:
        devices, topology = _CROSS_DEVICES[platform](options)
    if not devices:
        raise PlatformUnavailable(
            f"this host cannot compile for {platform} (no device, no cross-compiler)"
        )
    if len(devices) < count:
        hint = (
            f"; set XLA_FLAGS=--xla_force_host_platform_device_count={count}"
            if platform == "cpu"
            else ""
        )
        raise PlatformUnavailable(
            f"the target needs {count} {platform} devices and {len(devices)} are available{hint}"
        )
    return devices[:count], topology


def _placed(
    specs: list[Any], inputs: int, devices: list[Any], target: Any = None
) -> list[Any]:
    """Specs with shardings: one device, or data parallel over the inputs' first axis
    with parameters partitioned by the target's `param_sharding` over its `mesh`."""
    if len(devices) == 1:
        single = jax.sharding.SingleDeviceSharding(devices[0])
        return jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=single), specs
        )
    axes = dict(getattr(target, "mesh", None) or {}) or {"data": len(devices)}
    mesh = Mesh(np.array(devices).reshape(tuple(axes.values())), tuple(axes))
    data_axis, data_size = next(iter(axes.items()))
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
    placed[2 : 2 + inputs] = [batch(s) for s in specs[2 : 2 + inputs]]
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


def _compiler_options(platform: str, options: CompileOptions) -> dict[str, str]:
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
    platform: str,
    fn: Callable[..., Any],
    specs: list[Any],
    target: Any,
    options: CompileOptions,
) -> tuple[bytes, dict[str, Any], Any]:
    """Compiles and serializes one native executable.

    **Returns:** `(payload, manifest entry fields, out_tree)`.
    """
    devices, topology = _devices_for(platform, target.devices, options)
    compiler_options = _compiler_options(platform, options)
    lowered = jax.jit(fn).lower(*_placed(specs, len(target.inputs), devices, target))
    compiled = lowered.compile(compiler_options or None)
    payload, _, out_tree = serialize_executable.serialize(compiled)
    info: dict[str, Any] = {
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "topology": topology,
        "compiler_options": compiler_options,
    }
    if platform == "cpu":
        # jax#28908: the loader initialises LAPACK first only when it is used (it costs ~80 ms).
        info["needs_lapack"] = "lapack_" in compiled.as_text()
        info["cpu"] = _cpu_info(options)
    return payload, info, out_tree


def _export(
    fn: Callable[..., Any], specs: list[Any], platforms: Sequence[str]
) -> jax.export.Exported:
    return jax.export.export(jax.jit(fn), platforms=tuple(platforms))(*specs)


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
    to build; `options`: the compile options.

    **Returns:** a JSON-ready dict (stored in the manifest as `build_key`).
    """
    config = options.cuda_target_config
    return {
        "source_sha256": target.source_sha256,
        "generated_sha256": _generated_sha256(target),
        "aotflax_version": artifacts.aotflax_version(),
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__,
        "platforms": sorted(platforms),
        "xla_portable": options.xla_portable,
        "tpu_topology": options.tpu_topology,
        "cuda_target_config": artifacts.sha256_file(Path(config)) if config else None,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "rng_impl": _rng_impl() if target.stochastic else None,
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
    target: Any, xla_portable: bool, tpu_topology: str | None, cuda_config: str | None
) -> CompileOptions:
    # A target may carry its own cross-compile choices (a later Target field).
    return CompileOptions(
        xla_portable,
        tpu_topology or getattr(target, "tpu_topology", None),
        cuda_config or getattr(target, "cuda_target_config", None),
    )


def stale_reason(
    target: Any,
    out_dir: Path,
    *,
    platforms: Sequence[str] | None = None,
    xla_portable: bool = True,
    tpu_topology: str | None = None,
    cuda_target_config: str | None = None,
) -> str | None:
    """Why `compile_target` would rebuild this target, or None when its artifacts are current.

    Cheap (no trace, no hashing of artifacts), so a no-change build does no work.

    **Arguments:** as `compile_target`.

    **Returns:** a reason, or None.
    """
    options = _options(target, xla_portable, tpu_topology, cuda_target_config)
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
    tpu_topology: str | None = None,
    cuda_target_config: str | None = None,
    sign_key: bytes | None = None,
) -> dict[str, Any]:
    """Exports, compiles and writes the artifacts of one target.

    **Arguments:**
    - `target`: a `Target` of an imported generated module.
    - `out_dir`: the artifacts root (`generated/artifacts`); files go to
      `out_dir/<module path>/<target name>/`.
    - `platforms`: platforms to build (default: the target's).
    - `xla_portable`: cap XLA:CPU at AVX2 so the executable runs on other x86 hosts.
    - `tpu_topology`, `cuda_target_config`: cross-compile for hardware this
      host lacks (default: the target's attributes of those names, if any).
    - `sign_key`: sign the manifest with this HMAC key (`artifacts.signing_key`).

    **Returns:** the manifest written. Platforms this host cannot compile for
    are listed under `skipped` with the reason; the export covers them.
    """
    chosen = _resolve(target, platforms)
    options = _options(target, xla_portable, tpu_topology, cuda_target_config)
    impl = _rng_impl()
    key = _key_spec(impl) if target.stochastic else None
    fn = boundary_function(target, impl)
    exported = _export(fn, _export_specs(target, key), chosen)
    export_bytes = bytes(exported.serialize())
    payloads, entries, skipped = _native_executables(
        target, fn, _arg_specs(target, key), chosen, options, exported.out_tree
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
        "executables": entries,
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
    return {
        name: {
            "shape": list(target.symbolic.get(name, spec.shape)),
            "dtype": jnp.dtype(spec.dtype).name,
        }
        for name, spec in target.inputs.items()
    }


def _native_executables(
    target: Any,
    fn: Callable[..., Any],
    specs: list[Any],
    platforms: Sequence[str],
    options: CompileOptions,
    out_tree: Any,
) -> tuple[dict[str, bytes], dict[str, dict[str, Any]], dict[str, str]]:
    """Compiles every platform this host can; `(payloads, entries, skipped)` by platform."""
    payloads: dict[str, bytes] = {}
    entries: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for platform in platforms:
        if target.symbolic:
            skipped[platform] = "symbolic input dimensions: only the export is built"
            continue
        try:
            payload, info, tree = _compile_native(platform, fn, specs, target, options)
        except PlatformUnavailable as reason:
            skipped[platform] = str(reason)
            continue
        if tree != out_tree:  # the runtime rebuilds out_tree from the manifest
            raise AssertionError(
                f"internal error: {target.name} on {platform}: {tree} != {out_tree}"
            )
        payloads[platform] = payload
        name = artifacts.artifact_file_name(
            f"executable-{platform}", artifacts.sha256_bytes(payload)
        )
        entries[platform] = artifacts.file_entry(
            name, payload, target=_qualified(target), arguments=_flat_arguments(specs), **info
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
    for platform, payload in payloads.items():
        artifacts.write_atomic(
            folder / manifest["executables"][platform]["file"], payload
        )
    artifacts.write_atomic(folder / manifest["export"]["file"], export_bytes)
    artifacts.write_manifest(folder, manifest, sign_key)
    artifacts.remove_unreferenced(folder, manifest)
