"""Build artifacts on disk: manifests, hashes, atomic writes.

Per target, one folder `<artifacts root>/<module path>/<target name>/`
(`generated/artifacts/sub/foo/net_b32/` for target `net_b32` of
`models/sub/foo.py`) holds

- `manifest.json`, written last: the commit point of a build;
- `executable-<platform>-<sha256[:16]>.bin` per platform compiled for: the
  payload of `jax.experimental.serialize_executable.serialize` (jax's own
  format; trusted code: the loader checks its sha256 first);
- `export-<sha256[:16]>.bin`: the serialized `jax.export.Exported` for every
  platform the target names.

File names carry their content hash, so a build that stops half-way never
overwrites a file the previous manifest points at; files no manifest names
are removed after the new manifest is in place.

This module does not import jax (only the compile stage does). The generated
`_runtime.py` (rendered from `templates/runtime.py.j2`) reads manifests with
its own few lines of code, since generated code cannot import aotflax; the
`format_version` below is rendered into it.

Manifest format changelog (`format_version`):

- 1 (2026-11-24): first version. Fields: `format_version`, `target`,
  `module`, `source_sha256`, `generated_sha256`, `aotflax_version`, `jax`,
  `jaxlib`, `build_key`, `inputs` (name -> `{"shape", "dtype"}`; symbolic
  dims as strings), `outputs` (the tree of `(outputs, new_state)`, see
  `tree_to_json`), `param_count`, `rng` (`{"impl", "key_shape"}` or null),
  `executables` (platform -> `{"file", "sha256", "size", "device_kind",
  "device_count", "topology", "compiler_options", "needs_lapack", "cpu"}`),
  `skipped` (platform -> why no executable), `export` (`{"file", "sha256",
  "size", "platforms"}`), `xla_flags`.
- 2 (2026-11-27): executable entries gain `memory`: XLA's `memory_analysis()`
  in bytes (`{"arguments", "outputs", "temporaries", "generated_code",
  "alias", "peak"}`), read by `aotflax summary` and the build's table.
- 3 (2026-12-01): `buckets` (dimension -> sizes; `{}` without buckets); a bucketed
  target has one executable per bucket size (combination), keyed
  `"<platform key>@batch=8,length=16"`, whose entry gains `bucket` (dimension -> size).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "ManifestError",
    "aotflax_version",
    "artifact_file_name",
    "file_entry",
    "read_manifest",
    "remove_unreferenced",
    "render_runtime",
    "sha256_bytes",
    "sha256_file",
    "spec_to_json",
    "stale_reason",
    "target_folder",
    "tree_to_json",
    "write_atomic",
    "write_manifest",
]

#: Version of the manifest layout; bump it (and the changelog above) on any change.
FORMAT_VERSION = 3
MANIFEST_NAME = "manifest.json"


class ManifestError(ValueError):
    """A manifest is missing, unreadable or of another format version."""


def aotflax_version() -> str:
    """The version of the aotflax sources doing the build (`aotflax.__version__`).

    Read from the package itself, not from installed metadata, so a build from a
    source checkout and from an installed wheel write the same bytes.
    """
    from aotflax import __version__

    return __version__


# --- hashes and atomic writes -------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content, read in chunks.

    **Arguments:** `path`: the file.

    **Returns:** the hex digest.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Writes `data` to `path` so that readers see the old file or the new one, never half.

    The bytes go to a temporary file in the same folder (so `os.replace` is a
    rename within one file system), are fsynced, then renamed over `path`.

    **Arguments:** `path`: destination (its folder is created); `data`: the bytes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every OS (Windows).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- manifests ---------------------------------------------------------------


def target_folder(root: Path, module: str, target: str) -> Path:
    """The folder of one target's artifacts.

    **Arguments:** `root`: the artifacts root (`generated/artifacts`);
    `module`: dotted module path relative to `generated/` ("sub.foo");
    `target`: the target's name.

    **Returns:** `root/sub/foo/<target>`.
    """
    return root.joinpath(*module.split("."), target)


def artifact_file_name(kind: str, sha256: str) -> str:
    """`executable-cpu-<hash16>.bin` for kind "executable-cpu", `export-<hash16>.bin` for "export"."""
    return f"{kind}-{sha256[:16]}.bin"


def file_entry(name: str, data: bytes, **extra: Any) -> dict[str, Any]:
    """The manifest entry of one artifact file: its name, sha256 and size, plus `extra`."""
    return {"file": name, "sha256": sha256_bytes(data), "size": len(data), **extra}


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Writes `manifest.json` atomically, with sorted keys so that equal manifests are equal bytes.

    **Arguments:** `folder`: the target's folder; `manifest`: JSON-ready fields.
    """
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    write_atomic(folder / MANIFEST_NAME, text.encode("utf-8"))


def read_manifest(folder: Path) -> dict[str, Any]:
    """Reads and validates the manifest of a target folder.

    **Arguments:** `folder`: the target's folder.

    **Returns:** the manifest.

    **Raises:** `ManifestError` when it is missing, not JSON, or of another
    `format_version`.
    """
    path = folder / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"no manifest at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"cannot read {path}: {error}") from None
    found = manifest.get("format_version") if isinstance(manifest, dict) else None
    if found != FORMAT_VERSION:
        raise ManifestError(
            f"{path} has format_version {found!r}, expected {FORMAT_VERSION}"
        )
    return manifest


def remove_unreferenced(folder: Path, manifest: Mapping[str, Any]) -> list[str]:
    """Deletes artifact files of earlier builds that `manifest` no longer names.

    Only files that look like ours (`*.bin`, leftover `.*.tmp`) are touched.

    **Returns:** the names removed.
    """
    keep = {entry["file"] for entry in manifest.get("executables", {}).values()}
    if manifest.get("export"):
        keep.add(manifest["export"]["file"])
    removed = []
    for path in sorted(folder.iterdir()):
        ours = path.suffix == ".bin" or (
            path.name.startswith(".") and path.suffix == ".tmp"
        )
        if path.is_file() and ours and path.name not in keep:
            path.unlink()
            removed.append(path.name)
    return removed


def stale_reason(folder: Path, build_key: Mapping[str, Any]) -> str | None:
    """Why a target's artifacts must be rebuilt, or None when they are up to date.

    Cheap: compares the manifest's `build_key` with `build_key` and checks that
    every file exists with its recorded size (hashes are checked at load).

    **Arguments:** `folder`: the target's folder; `build_key`: what the
    artifacts depend on (`aotflax.compile.build_key`).

    **Returns:** a reason to rebuild, or None.
    """
    try:
        manifest = read_manifest(folder)
    except ManifestError as error:
        return str(error)
    old = manifest.get("build_key", {})
    changed = sorted(
        key for key in set(old) | set(build_key) if old.get(key) != build_key.get(key)
    )
    if changed:
        return f"{', '.join(changed)} changed"
    entries = [
        *manifest.get("executables", {}).values(),
        *([manifest["export"]] if manifest.get("export") else []),
    ]
    for entry in entries:
        path = folder / entry["file"]
        if not path.is_file() or path.stat().st_size != entry["size"]:
            return f"{entry['file']} is missing or has the wrong size"
    return None


# --- trees of shapes as JSON --------------------------------------------------


def spec_to_json(leaf: Any) -> dict[str, Any]:
    """`{"shape": [...], "dtype": "float32"}` of anything with `.shape` and `.dtype`.

    Symbolic dimensions (from `jax.export`) are written as strings ("batch").
    """
    dims = [d if isinstance(d, int) else str(d) for d in leaf.shape]
    return {"shape": dims, "dtype": getattr(leaf.dtype, "name", str(leaf.dtype))}


def tree_to_json(tree: Any) -> Any:
    """A JSON description of a pytree of shapes that keeps its structure.

    A leaf is `{"shape", "dtype"}`; containers are `{"dict": {...}}`,
    `{"tuple": [...]}`, `{"list": [...]}`; None is `{"none": true}`. The runtime
    rebuilds the tree structure from this (no pickle).

    **Raises:** `TypeError` for containers jax treats differently from these
    (namedtuples, custom pytree nodes) or non-string dict keys.
    """
    if hasattr(tree, "shape") and hasattr(tree, "dtype"):
        return spec_to_json(tree)
    if tree is None:
        return {"none": True}
    if type(tree) is dict:
        if not all(isinstance(key, str) for key in tree):
            raise TypeError(f"dict keys must be strings, got {sorted(map(repr, tree))}")
        return {"dict": {key: tree_to_json(value) for key, value in tree.items()}}
    if type(tree) is tuple:
        return {"tuple": [tree_to_json(value) for value in tree]}
    if type(tree) is list:
        return {"list": [tree_to_json(value) for value in tree]}
    raise TypeError(
        f"cannot describe a {type(tree).__name__} in a manifest (use dicts, tuples and lists)"
    )


# --- the runtime template -------------------------------------------------------


def render_runtime(version: str | None = None) -> str:
    """The source of `generated/_runtime.py`, rendered from `templates/runtime.py.j2`.

    **Arguments:** `version`: the aotflax version to stamp (default: installed).

    **Returns:** the Python source.
    """
    import jinja2

    from .emit import TEMPLATES  # the source tree's templates/, or the wheel's copy

    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
    )
    template = env.from_string((TEMPLATES / "runtime.py.j2").read_text(encoding="utf-8"))
    return template.render(
        aotflax_version=version or aotflax_version(),
        manifest_format_version=FORMAT_VERSION,
    )
