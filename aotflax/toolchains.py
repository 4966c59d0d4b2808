"""The cross-compilers a CPU build host needs for TPU and GPU executables, kept out of the way.

Compiling for a TPU needs libtpu; compiling for a CUDA GPU needs jax's CUDA
plugin. Installed into the build's Python environment they would make every
jax start-up probe for that hardware (libtpu asks the cloud metadata server for
a TPU, the CUDA plugin looks for a driver). So aotflax installs each into a
per-user cache, one folder per jax version, and only the compile step loads it:

    aotflax install-toolchain tpu      # libtpu into ~/.cache/aotflax/libtpu-<jax version>
    aotflax install-toolchain cuda     # jax-cuda12-plugin/-pjrt into ~/.cache/aotflax/cuda12-<jax version>

`AOTFLAX_TOOLCHAINS` moves the cache. A libtpu or CUDA plugin already
installed in the environment (`pip install 'jax[tpu]'`) is used as it is.

This module does not import jax at import time; `load_libtpu` and
`load_cuda_devices` import it when the compile stage calls them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

__all__ = [
    "Toolchain",
    "ToolchainMissing",
    "TOOLCHAINS",
    "gpu_target_config",
    "install",
    "install_command",
    "load_cuda_devices",
    "load_libtpu",
    "missing",
    "version",
]

#: GPU target descriptions shipped with aotflax (`<name>.txtpb`).
GPU_TARGETS_DIR = Path(__file__).resolve().parent / "gpu_targets"


class ToolchainMissing(RuntimeError):
    """A cross-compiler is not installed; the message says how to install it."""


@dataclass(frozen=True)
class Toolchain:
    """One cross-compiler: what pip installs and what proves it is there."""

    #: The platform it compiles for.
    platform: str
    #: The folder name in the cache (the jax version is appended).
    folder: str
    #: A module that exists once it is installed (importable from the folder).
    module: str
    #: The jax extra that pins its version ("tpu", "cuda12-local").
    extra: str
    #: The start of the names of its packages among that extra's requirements.
    packages: str


TOOLCHAINS: dict[str, Toolchain] = {
    "tpu": Toolchain("tpu", "libtpu", "libtpu", "tpu", "libtpu"),
    "cuda": Toolchain("cuda", "cuda12", "jax_plugins.xla_cuda12", "cuda12-local", "jax-cuda12"),
}


def _jax_version() -> str:
    return metadata.version("jax")


def cache_root() -> Path:
    """Where toolchains are installed (`AOTFLAX_TOOLCHAINS`, else ~/.cache/aotflax)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aotflax"
    return Path(os.environ.get("AOTFLAX_TOOLCHAINS", default))


def folder(platform: str) -> Path:
    """The cache folder of one toolchain for this jax version."""
    return cache_root() / f"{TOOLCHAINS[platform].folder}-{_jax_version()}"


def requirements(platform: str) -> list[str]:
    """The pip requirements of a toolchain, pinned as this jax's extra pins them.

    **Returns:** e.g. `["libtpu==0.0.42.*"]`; for CUDA the plugin and its PJRT
    library at exactly this jax's version.
    """
    chain = TOOLCHAINS[platform]
    pinned = []
    for requirement in metadata.requires("jax") or []:
        spec, _, marker = requirement.partition(";")
        if f'extra == "{chain.extra}"' in marker and spec.strip().startswith(chain.packages):
            pinned.append(spec.strip())
    if platform == "cuda":
        pinned.append(f"jax-cuda12-pjrt=={_jax_version()}")
    return pinned


def install_command(platform: str) -> str:
    """The command a user runs to install a toolchain (for messages)."""
    return f"aotflax install-toolchain {platform}"


def _in_environment(platform: str) -> bool:
    module = TOOLCHAINS[platform].module
    with contextlib.suppress(ImportError, ValueError):
        return find_spec(module) is not None
    return False


def _installed_in_cache(platform: str) -> bool:
    parts = TOOLCHAINS[platform].module.split(".")
    base = folder(platform).joinpath(*parts)
    return base.is_dir() and any(base.iterdir())


def missing(platform: str) -> str | None:
    """Why a toolchain cannot be used, or None when it is installed.

    **Returns:** a message naming the install command, or None.
    """
    if platform == "tpu" and os.path.isfile(os.environ.get("TPU_LIBRARY_PATH", "")):
        return None
    if _in_environment(platform) or _installed_in_cache(platform):
        return None
    what = "libtpu" if platform == "tpu" else "jax's CUDA plugin"
    pins = " ".join(requirements(platform)) or "(no pin found in jax's metadata)"
    return (f"cross-compiling for {platform} needs {what}, which is not installed: run "
            f"`{install_command(platform)}` (pip installs {pins} into {folder(platform)}; "
            "only the compile step loads it)")


def version(platform: str) -> str | None:
    """"libtpu 0.0.42.1": the installed toolchain's package and version (for manifests)."""
    chain = TOOLCHAINS[platform]
    found = list(metadata.distributions(path=[str(folder(platform))]))
    found += [] if found else list(metadata.distributions())
    for dist in found:
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith(chain.packages) and not name.endswith("pjrt"):
            return f"{name} {dist.version}"
    return None


def install(platform: str, quiet: bool = False) -> Path:
    """Installs a toolchain into its cache folder with pip (once per jax version).

    **Arguments:** `platform`: "tpu" or "cuda"; `quiet`: no pip output.

    **Returns:** the folder.

    **Raises:** `ToolchainMissing` when pip fails (no network, no wheel for this platform).
    """
    target = folder(platform)
    if _installed_in_cache(platform):
        return target
    pins = requirements(platform)
    if not pins:
        raise ToolchainMissing(f"jax {_jax_version()} names no {platform} toolchain in its extras")
    target.parent.mkdir(parents=True, exist_ok=True)
    # pip into a temporary folder, renamed when complete: a stopped install leaves no half.
    tmp = tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.")
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", tmp, *pins]
    if quiet:
        command.insert(4, "-q")
    try:
        subprocess.run(command, check=True, timeout=1800, capture_output=quiet, text=True)
        try:
            os.replace(tmp, target)
        except OSError:
            # another process (a second test worker) renamed its complete install first
            if not _installed_in_cache(platform):
                raise
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
        detail = getattr(error, "stderr", None) or str(error)
        raise ToolchainMissing(f"pip could not install {' '.join(pins)}: "
                               f"{detail.strip()[-2000:]}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Sets environment variables for a block, then puts back what was there."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[list[str]]:
    """Captures what native code writes to stderr (libtpu's notes about the missing TPU).

    **Yields:** a list that holds the captured text after the block.
    """
    captured: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield captured
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))


def _libtpu_path() -> str:
    explicit = os.environ.get("TPU_LIBRARY_PATH", "")
    if os.path.isfile(explicit):
        return explicit
    if not _in_environment("tpu"):
        problem = missing("tpu")
        if problem:
            raise ToolchainMissing(problem)
        return str(folder("tpu") / "libtpu" / "libtpu.so")
    import libtpu  # installed in the environment (jax[tpu])

    return str(libtpu.get_library_path())


def load_libtpu(topology: str, **options: object) -> list:
    """The compile-only devices of a TPU topology, loading libtpu on first use.

    The build's jax backends are started first, so that jax, which now finds
    libtpu, does not go looking for a TPU on this host.

    **Arguments:** `topology`: a libtpu topology name ("v5e:2x2"); `options`:
    libtpu topology options (`chips_per_host_bounds`).

    **Returns:** the devices (`jax.Device`, compile only).

    **Raises:** `ToolchainMissing`; `ValueError` with libtpu's message when it
    refuses the topology.
    """
    import jax
    from jax.experimental import topologies

    jax.devices()  # start the configured backends before libtpu becomes findable
    # No chips are used, so neither the cloud metadata server nor libtpu's one-process
    # lock (/tmp/libtpu_lockfile) applies: parallel compile jobs and builds each load it.
    quiet = {"TPU_SKIP_MDS_QUERY": "1", "ALLOW_MULTIPLE_LIBTPU_LOAD": "1"}
    with _environ(TPU_LIBRARY_PATH=_libtpu_path(), **quiet), _quiet_stderr() as notes:
        try:
            return list(topologies.get_topology_desc(topology, "tpu", **options).devices)
        except Exception as error:  # jaxlib's JaxRuntimeError carries libtpu's message
            message = str(error).removeprefix("INVALID_ARGUMENT: ")
            failed = error
    if "TPU support not installed" in message:
        raise ToolchainMissing(f"libtpu did not load: {message} {''.join(notes)[-1000:]}")
    raise ValueError(message) from failed


def load_cuda_devices(target_config: str, count: int) -> list:
    """Compile-only CUDA devices of a GPU description, loading jax's CUDA plugin on first use.

    No GPU or driver is needed: the plugin compiles for the description.

    **Arguments:** `target_config`: a GpuTargetConfig text proto; `count`: devices.

    **Returns:** the devices (`jax.Device`, compile only).

    **Raises:** `ToolchainMissing` when the plugin is not installed; `ValueError`
    with the plugin's message when it refuses the description.
    """
    import jax
    from jax.experimental import topologies

    def devices() -> list:
        topology = topologies.get_topology_desc(
            "aotflax", "cuda", target_config=target_config, topology=f"1x1x{count}")
        return list(topology.devices)

    jax.devices()  # as for libtpu: the host's own backends first
    try:
        return devices()
    except NotImplementedError:  # no CUDA plugin registered in this process yet
        pass
    except Exception as error:
        raise ValueError(str(error)) from None
    if not _in_environment("cuda"):
        problem = missing("cuda")
        if problem:
            raise ToolchainMissing(problem)
        sys.path.append(str(folder("cuda")))
    import importlib

    with _environ(JAX_SKIP_CUDA_CONSTRAINTS_CHECK="1"), _quiet_stderr():
        # What jax's plugin discovery calls; jax ran discovery before the folder was on the path.
        importlib.import_module("jax_plugins.xla_cuda12").initialize()
    with _quiet_stderr():
        try:
            return devices()
        except Exception as error:
            raise ValueError(str(error)) from None


def gpu_target_config(name_or_path: str) -> tuple[str, str]:
    """A GpuTargetConfig text proto, by shipped name ("h100") or path.

    **Returns:** `(name, text)`; the name is the shipped name or the file's stem.

    **Raises:** `ValueError` when neither exists.
    """
    shipped = GPU_TARGETS_DIR / f"{name_or_path}.txtpb"
    if "/" not in name_or_path and shipped.is_file():
        return name_or_path, shipped.read_text(encoding="utf-8")
    path = Path(name_or_path)
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in GPU_TARGETS_DIR.glob("*.txtpb")))
        raise ValueError(f"no GPU target {name_or_path!r}: name one of {names} or the path of "
                         "a GpuTargetConfig text proto")
    return path.stem, path.read_text(encoding="utf-8")
