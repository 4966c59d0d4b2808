"""Hardware a target can name: TPU topologies and GPU target descriptions (no jax here).

A target declares the hardware its native executables are for, and a CPU build
host cross-compiles for it (`aotflax.compile`, through libtpu and the CUDA
plugin that `aotflax.toolchains` installs):

    aot.target("mlp_tpu", MLP, x=aot.f32[8, 784], tpu="v5e:2x2")        # one TPU v5e host
    aot.target("mlp_pod", MLP, x=aot.f32[64, 784], devices=16, tpu="v5e:4x4")  # a 4-host slice
    aot.target("mlp_gpu", MLP, x=aot.f32[8, 784], gpu="h100")

`tpu=` is a topology name as libtpu spells it, `<generation>:<chips per axis>`
(several as a tuple); `gpu=` names a GPU description shipped with aotflax
(`GPU_TARGETS`). Either adds its platform to the target's platforms. The
command line names them for every target that lists the platform and names
none itself (`--tpu-topology v5e:2x2`, `--gpu-target h100` or a path to a
GpuTargetConfig text proto).

What is checked here is what is known without libtpu: the generation, the
shape of the name, whether the slice divides into hosts, and the device count.
libtpu itself validates the rest when the build loads it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .diagnostics import Span

__all__ = [
    "GPU_TARGETS",
    "TPU_GENERATIONS",
    "GpuTarget",
    "TpuGeneration",
    "TpuTopology",
    "parse_tpu_topology",
    "target_hardware",
]


@dataclass(frozen=True)
class TpuGeneration:
    """One TPU generation as libtpu names it."""

    #: The name in topology names ("v5e").
    name: str
    #: `jax.Device.device_kind` of its chips ("TPU v5 lite").
    device_kind: str
    #: Axes of its interconnect: 2 (a torus of chips in x, y) or 3.
    axes: int
    #: Chips per host along each axis (libtpu's default `chips_per_host_bounds`).
    host_bounds: tuple[int, int, int]
    #: jax devices per chip (TensorCores exposed separately).
    cores_per_chip: int


#: The generations the build can cross-compile for (libtpu accepts these names).
TPU_GENERATIONS: dict[str, TpuGeneration] = {
    g.name: g
    for g in (
        TpuGeneration("v4", "TPU v4", 3, (2, 2, 1), 2),
        TpuGeneration("v5e", "TPU v5 lite", 2, (2, 2, 1), 1),
        TpuGeneration("v5p", "TPU v5", 3, (2, 2, 1), 1),
        TpuGeneration("v6e", "TPU v6 lite", 2, (2, 2, 1), 1),
    )
}

_TOPOLOGY = re.compile(r"^([a-z0-9]+):(\d+(?:x\d+){1,2})$")


@dataclass(frozen=True)
class TpuTopology:
    """A named TPU slice: its generation, chips per axis and how they split into hosts."""

    name: str
    generation: TpuGeneration
    #: Chips along x, y, z.
    bounds: tuple[int, int, int]
    #: Chips per host along x, y, z (the slice itself when it fits one host).
    host_bounds: tuple[int, int, int]

    @property
    def chips(self) -> int:
        return math.prod(self.bounds)

    @property
    def devices(self) -> int:
        """jax devices of the whole slice."""
        return self.chips * self.generation.cores_per_chip

    @property
    def hosts(self) -> int:
        return self.chips // math.prod(self.host_bounds)

    @property
    def shape(self) -> str:
        """"2x2" (or "2x2x2"), as in the name."""
        return self.name.split(":", 1)[1]

    def describe(self) -> str:
        """"v5e:4x4 (16 chips on 4 hosts)"."""
        unit = "chip" if self.generation.cores_per_chip == 1 else "device"
        count = self.chips if unit == "chip" else self.devices
        hosts = f"{self.hosts} host{'s' if self.hosts != 1 else ''}"
        return f"{self.name} ({count} {unit}{'s' if count != 1 else ''} on {hosts})"


def parse_tpu_topology(text: Any) -> TpuTopology:
    """Checks a topology name ("v5e:2x2") as far as it can be checked without libtpu.

    **Arguments:** `text`: the name a target or the command line gave.

    **Returns:** the topology.

    **Raises:** `ValueError` with a message that says what a valid name looks like.
    """
    known = ", ".join(TPU_GENERATIONS)
    if not isinstance(text, str):
        raise ValueError(f"a TPU topology is a name such as \"v5e:2x2\", got {text!r}")
    match = _TOPOLOGY.match(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a TPU topology name: expected "
                         f"<generation>:<chips per axis> such as \"v5e:2x2\" or \"v4:2x2x2\"")
    generation = TPU_GENERATIONS.get(match.group(1))
    if generation is None:
        raise ValueError(f"unknown TPU generation {match.group(1)!r} in {text!r}: "
                         f"expected one of {known}")
    dims = tuple(int(d) for d in match.group(2).split("x"))
    if generation.axes == 2 and len(dims) == 3 and dims[2] != 1:
        raise ValueError(f"TPU {generation.name} chips form a 2-D torus: {text!r} has "
                         f"{dims[2]} chips along z (write {generation.name}:{dims[0]}x{dims[1]})")
    if min(dims) < 1:
        raise ValueError(f"{text!r} has an axis of 0 chips")
    x, y, z = (*dims, 1, 1)[:3]
    bounds = (x, y, z)
    host = generation.host_bounds
    if all(b <= h for b, h in zip(bounds, host)):
        per_host = bounds  # a slice of one host, smaller than a full host
    elif all(b % h == 0 for b, h in zip(bounds, host)):
        per_host = host
    else:
        shape = "x".join(map(str, host[: max(len(dims), generation.axes)]))
        raise ValueError(f"{text!r} does not divide into TPU {generation.name} hosts of "
                         f"{shape} chips: a slice larger than one host spans whole hosts")
    return TpuTopology(f"{generation.name}:{match.group(2)}", generation, bounds, per_host)


@dataclass(frozen=True)
class GpuTarget:
    """A GPU description shipped with aotflax (`aotflax/gpu_targets/<name>.txtpb`)."""

    name: str
    #: `jax.Device.device_kind` of the GPU, which `load()` compares on the host.
    device_kind: str
    #: The CUDA compute capability the executable's kernels are compiled for.
    compute_capability: str


#: GPU target configs shipped with aotflax, by the name `gpu=` takes.
GPU_TARGETS: dict[str, GpuTarget] = {
    g.name: g
    for g in (
        GpuTarget("h100", "NVIDIA H100 80GB HBM3", "9.0"),
        GpuTarget("h200", "NVIDIA H200", "9.0"),
    )
}


def _names(value: Any) -> tuple[Any, ...] | None:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (tuple, list)) and value:
        return tuple(value)
    return None


def target_hardware(
    r: Any,
    platforms: tuple[str, ...],
    explicit_platforms: bool,
    tpu: Any,
    gpu: Any,
    devices: int,
    spans: dict[str, "Span"],
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Checks `tpu=` and `gpu=` of an `aot.target` call.

    **Arguments:** `r`: the resolver (for `r.error`); `platforms`: the
    target's platforms; `explicit_platforms`: whether `platforms=` was given;
    `tpu`, `gpu`: the keyword values (None when absent); `devices`: the
    target's device count; `spans`: keyword name -> its span.

    **Returns:** `(platforms, tpu topologies, gpu targets)`; a named TPU or GPU
    adds its platform when `platforms=` was not given.
    """
    topologies: tuple[str, ...] = ()
    gpus: tuple[str, ...] = ()
    if tpu is not None:
        names = _names(tpu)
        if names is None:
            raise r.error("AOT440", "tpu= names a TPU topology such as \"v5e:2x2\" (or a "
                          f"tuple of them), got {tpu!r}", spans["tpu"])
        parsed = []
        for name in names:
            try:
                parsed.append(parse_tpu_topology(name))
            except ValueError as error:
                raise r.error("AOT440", str(error), spans["tpu"]) from None
        small = [t for t in parsed if t.devices < devices]
        if small:
            raise r.error("AOT440", f"the target runs on {devices} devices and TPU topology "
                          f"{small[0].describe()} has {small[0].devices}", spans["tpu"],
                          hint="name a larger slice or fewer devices=")
        topologies = tuple(dict.fromkeys(t.name for t in parsed))
    if gpu is not None:
        names = _names(gpu)
        bad = [n for n in names or (gpu,) if not isinstance(n, str) or n not in GPU_TARGETS]
        if names is None or bad:
            raise r.error("AOT441", f"unknown GPU target {bad[0] if bad else gpu!r}: gpu= names "
                          f"one of {', '.join(GPU_TARGETS)} (another GPU: --gpu-target "
                          "PATH on the command line)", spans["gpu"])
        gpus = tuple(dict.fromkeys(names))
    for wanted, named, keyword in (("tpu", topologies, "tpu"), ("cuda", gpus, "gpu")):
        if not named or wanted in platforms:
            continue
        if explicit_platforms:
            raise r.error("AOT442", f"{keyword}= names {wanted} hardware but platforms= does not "
                          f"list \"{wanted}\"", spans[keyword],
                          hint=f"add \"{wanted}\" to platforms=, or leave platforms= out")
        platforms = (*platforms, wanted)
    return platforms, topologies, gpus
