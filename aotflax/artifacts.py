"""Build artifacts on disk: manifests, hashes, atomic writes.

Per target, one folder `<artifacts root>/<module path>/<target name>/`
(`generated/artifacts/sub/foo/net_b32/` for target `net_b32` of
`models/sub/foo.py`) holds

- `manifest.json`, written last: the commit point of a build;
- `manifest.sig` when the build was given a signing key (`--sign-key`):
  `hmac-sha256:<hex>`, the HMAC-SHA256 of `SIGNATURE_CONTEXT` followed by the
  manifest's bytes, written just before the manifest;
- `executable-<platform>-<sha256[:16]>.bin` per platform compiled for: the
  payload of `jax.experimental.serialize_executable.serialize` (jax's own
  format; native code: the loader checks its sha256 first and unpickles it
  with an unpickler that admits only the classes executables consist of);
- `export-<sha256[:16]>.bin`: the serialized `jax.export.Exported` for every
  platform the target names.

Trust: the sha256s guard against accidents; anyone who can write the folder can
rewrite the manifest too, so only the signature, made with a key the writer
lacks, makes a folder trusted (see the README's Security section).

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
- 3 (2026-12-02): artifacts are bound to their target. Each executable entry
  gains `target` (`"<module>.<target>"`) and `arguments` (the flat list of
  `{"shape", "dtype"}` the executable takes: params, state, inputs and the rng
  key data, in jax's flattening order); the export entry gains `target`. The
  loader checks both against the target before loading and checks the loaded
  artifact's own signature against them. Optional `manifest.sig` next to the
  manifest. Trees nest at most `MAX_TREE_DEPTH` levels; file names are plain
  names (`[A-Za-z0-9][A-Za-z0-9_.-]*`) inside the target's folder.
- 4 (2026-12-02): `donate_argnums` (the arguments the artifacts consume: a
  train step's params and packed state), `processes` (the `jax.distributed`
  processes the target spans) and `mesh` (`[[axis, size], ...]`, the global
  mesh the export's shardings name). Executable entries over several processes
  gain `processes`, `devices` and `hosts` (which devices each process owns).
  `memory.peak` counts the temporaries (XLA:CPU's own peak leaves them out).
- 5 (2026-12-02): `buckets` (dimension -> sizes; `{}` without buckets); a bucketed
  target has one executable per bucket size (combination), keyed
  `"<platform key>@batch=8,length=16"`, whose entry gains `bucket` (dimension -> size).
  An input declared as a random key (`aot.key`) has jax's key type as its `dtype`
  (`"key<fry>"`) and gains `key_impl` (`"threefry2x32"`) and `key_data` (the
  `{"shape", "dtype"}` of the raw key data the artifacts take in its place).
- 6 (2026-12-02): an input may be a tree of arrays (`batch={"tokens": ..., "mask": ...}`):
  its `inputs` entry is a tree node of `tree_to_json` whose leaves are input entries
  as above; input names are identifiers, dict keys at most 1,024 characters. The
  executables' `arguments` list a tree's arrays in jax's order (dict keys sorted).
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import signal
import stat
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def human_bytes(n: int) -> str:
    """1536 -> "1.5 KiB"."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


__all__ = [
    "fsync_dir",
    "human_bytes",
    "stage_file",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "MAX_TREE_DEPTH",
    "SIGNATURE_NAME",
    "ManifestError",
    "NotARegularFile",
    "SigningKeyError",
    "UnsafeOutputPath",
    "aotflax_version",
    "artifact_file_name",
    "fault_point",
    "file_entry",
    "read_manifest",
    "read_regular",
    "real_folder",
    "remove_unreferenced",
    "render_runtime",
    "sha256_bytes",
    "sha256_file",
    "sign_manifest",
    "signature_valid",
    "signing_key",
    "spec_to_json",
    "stale_reason",
    "target_folder",
    "tree_to_json",
    "write_atomic",
    "write_manifest",
]

#: Version of the manifest layout; bump it (and the changelog above) on any change.
FORMAT_VERSION = 6
MANIFEST_NAME = "manifest.json"
#: The manifest's signature file, next to it.
SIGNATURE_NAME = "manifest.sig"
#: What a signature covers: these bytes, then the manifest's. The prefix keeps an
#: aotflax signature from being valid for anything else signed with the same key.
SIGNATURE_CONTEXT = b"aotflax manifest signature v1\n"
SIGNATURE_SCHEME = "hmac-sha256"
#: The deepest a manifest's output tree may nest (the loader refuses deeper ones).
MAX_TREE_DEPTH = 64
#: The smallest signing key accepted, in bytes.
MIN_KEY_BYTES = 16
# The largest manifest or cache file the build reads back from its output folder.
_MAX_READ = 64 << 20
#: Fault injection for the atomicity tests (`tests/test_atomic.py`): with
#: `AOTFLAX_FAULT_AT=N` the process kills itself with SIGKILL at the N-th point where
#: the build is about to change its output folder (write a file, rename one into
#: place, remove one), counted from 1; `AOTFLAX_FAULT_AT=list` prints every point to
#: stderr instead.  Unset (always, outside those tests) it does nothing.
FAULT_ENV = "AOTFLAX_FAULT_AT"
_faults = [0]


class ManifestError(ValueError):
    """A manifest is missing, unreadable, malformed or of another format version."""


class SigningKeyError(ValueError):
    """A signing key is too short or cannot be read (the message says which)."""


class NotARegularFile(OSError):
    """A path the build reads is a link, FIFO, device or folder instead of a file."""


class UnsafeOutputPath(OSError):
    """A folder the build would write through is a symbolic link or a file (see `real_folder`)."""


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


def fault_point(action: str, path: Path) -> None:
    """A point where the build changes its output folder: see `FAULT_ENV`.

    **Arguments:** `action`: what is about to happen ("write", "rename", "remove");
    `path`: the file it happens to.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    _faults[0] += 1
    if spec == "list":
        print(f"aotflax fault point {_faults[0]}: {action} {path}", file=sys.stderr, flush=True)
    elif spec == str(_faults[0]):
        os.kill(os.getpid(), signal.SIGKILL)


def write_atomic(path: Path, data: bytes) -> None:
    """Writes `data` to `path` so that readers see the old file or the new one, never half.

    The bytes go to a temporary file in the same folder (so `os.replace` is a
    rename within one file system), are fsynced, then renamed over `path`.

    **Arguments:** `path`: destination (its folder is created); `data`: the bytes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = stage_file(path, data)
    try:
        fault_point("rename", path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def stage_file(path: Path, data: bytes) -> str:
    """`data` in a new temporary file beside `path`, fsynced; returns its name (removed
    again if writing fails). Renaming it over `path` is the caller's step."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data[: len(data) // 2])
            file.flush()
            fault_point("write", path)  # half the bytes are in the temporary file
            file.write(data[len(data) // 2:])
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def read_regular(path: Path, limit: int = _MAX_READ, *, follow: bool = False) -> bytes:
    """The bytes of `path` if it is a regular file of at most `limit` bytes.

    Never blocks (a FIFO in the output folder would hang the build), checks the
    size before reading, and does not follow a final symbolic link unless
    `follow` (a key file the user names may be one).

    **Raises:** `FileNotFoundError`; `NotARegularFile` for a link, FIFO, device
    or folder, or a file over `limit`; `OSError` when it cannot be read.
    """
    nofollow = 0 if follow else getattr(os, "O_NOFOLLOW", 0)
    flags = os.O_RDONLY | nofollow | getattr(os, "O_NONBLOCK", 0)
    if not follow and not hasattr(os, "O_NOFOLLOW") and path.is_symlink():
        raise NotARegularFile(f"{path} is a symbolic link")
    try:
        fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise NotARegularFile(f"{path} is a symbolic link") from None
        raise
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(f"{path} is not a regular file")
        if info.st_size > limit:
            raise NotARegularFile(f"{path} is {info.st_size} bytes, more than {limit}")
        return file.read(limit)


def real_folder(root: Path, folder: Path) -> Path:
    """Creates `folder` below `root`, refusing to write through anything but real folders.

    Every component from `root` (exclusive) down to `folder` must be a folder
    that is not a symbolic link, or missing (then it is created): a link inside
    the output folder, which a repository can carry, would make the build write
    or delete outside it.

    **Arguments:** `root`: the output folder (trusted as given, created if
    missing); `folder`: a folder below it.

    **Returns:** `folder`.

    **Raises:** `UnsafeOutputPath` naming the offending path.
    """
    root.mkdir(parents=True, exist_ok=True)
    current = root
    for part in folder.relative_to(root).parts:
        current = current / part
        try:
            mode = current.lstat().st_mode
        except FileNotFoundError:
            current.mkdir(exist_ok=True)
            mode = current.lstat().st_mode
        if stat.S_ISLNK(mode):
            raise UnsafeOutputPath(f"{current} is a symbolic link; the build writes only real folders inside {root}")
        if not stat.S_ISDIR(mode):
            raise UnsafeOutputPath(f"{current} is a file where the build needs a folder")
    return folder


def fsync_dir(folder: Path) -> None:
    """Makes a rename in `folder` durable; not possible on every OS (Windows)."""
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


def write_manifest(
    folder: Path, manifest: Mapping[str, Any], sign_key: bytes | None = None
) -> None:
    """Writes `manifest.json` atomically, with sorted keys so that equal manifests are equal bytes.

    With `sign_key`, `manifest.sig` is written just before the manifest (a reader
    in between sees a mismatch and refuses, never a wrongly trusted folder);
    without it, a signature of an earlier build is removed after the manifest.

    **Arguments:** `folder`: the target's folder; `manifest`: JSON-ready fields;
    `sign_key`: a key from `signing_key`, or None.
    """
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    if sign_key is not None:
        write_atomic(folder / SIGNATURE_NAME, (sign_manifest(data, sign_key) + "\n").encode())
    write_atomic(folder / MANIFEST_NAME, data)
    if sign_key is None:
        (folder / SIGNATURE_NAME).unlink(missing_ok=True)


# --- signatures ----------------------------------------------------------------


def signing_key(data: bytes | str) -> bytes:
    """The HMAC key from the bytes of a key file or the text of `AOTFLAX_SIGN_KEY`.

    Surrounding whitespace is ignored, as the runtime's `load(verify_key=...)`
    ignores it, so a key file with a trailing newline signs what its text verifies.

    **Raises:** `SigningKeyError` for a key shorter than `MIN_KEY_BYTES`.
    """
    key = (data.encode("utf-8") if isinstance(data, str) else bytes(data)).strip()
    if len(key) < MIN_KEY_BYTES:
        raise SigningKeyError(
            f"the signing key is {len(key)} bytes; use at least {MIN_KEY_BYTES} random bytes "
            "(make one with: openssl rand -hex 32 > aotflax.key)"
        )
    return key


def sign_manifest(manifest: bytes, key: bytes) -> str:
    """The signature line of a manifest's bytes: `hmac-sha256:<hex>`."""
    mac = hmac.new(key, SIGNATURE_CONTEXT + manifest, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_SCHEME}:{mac}"


def signature_valid(folder: Path, key: bytes) -> bool:
    """Whether the folder's manifest carries a valid signature made with `key`."""
    try:
        manifest = read_regular(folder / MANIFEST_NAME)
        found = read_regular(folder / SIGNATURE_NAME, 4096).decode("ascii", "replace").strip()
    except OSError:
        return False
    return hmac.compare_digest(found.encode("ascii", "replace"), sign_manifest(manifest, key).encode())


# --- reading manifests back ------------------------------------------------------


def read_manifest(folder: Path) -> dict[str, Any]:
    """Reads the manifest of a target folder (the build's own view; the loader validates more).

    **Arguments:** `folder`: the target's folder.

    **Returns:** the manifest.

    **Raises:** `ManifestError` when it is missing, not a regular file, not JSON,
    of another `format_version`, or without the entries the build relies on.
    """
    path = folder / MANIFEST_NAME
    try:
        manifest = json.loads(read_regular(path).decode("utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"no manifest at {path}") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ManifestError(f"cannot read {path}: {type(error).__name__}: {error}") from None
    found = manifest.get("format_version") if isinstance(manifest, dict) else None
    if found != FORMAT_VERSION:
        raise ManifestError(
            f"{path} has format_version {found!r}, expected {FORMAT_VERSION}"
        )
    if not _file_entries_valid(manifest):
        raise ManifestError(f"{path} is malformed: its file entries are not what aotflax writes")
    return manifest


def _file_entries_valid(manifest: Mapping[str, Any]) -> bool:
    executables = manifest.get("executables")
    export = manifest.get("export")
    if not isinstance(executables, dict) or not isinstance(export, (dict, type(None))):
        return False
    entries = [*executables.values(), *([export] if export else [])]
    return all(
        isinstance(entry, dict)
        and isinstance(entry.get("file"), str)
        and "/" not in entry["file"]
        and "\\" not in entry["file"]
        and entry["file"] not in ("", ".", "..")
        and type(entry.get("size")) is int
        for entry in entries
    )


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
        # lstat: a link is removed as a link, never followed
        regular = stat.S_ISREG(path.lstat().st_mode)
        if regular and ours and path.name not in keep:
            fault_point("remove", path)
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
        try:
            info = (folder / entry["file"]).lstat()
        except OSError:
            info = None
        if info is None or not stat.S_ISREG(info.st_mode) or info.st_size != entry["size"]:
            return f"{entry['file']} is missing or has the wrong size"
    return None


# --- trees of shapes as JSON --------------------------------------------------


def spec_to_json(leaf: Any) -> dict[str, Any]:
    """`{"shape": [...], "dtype": "float32"}` of anything with `.shape` and `.dtype`.

    Symbolic dimensions (from `jax.export`) are written as strings ("batch").
    """
    dims = [d if isinstance(d, int) else str(d) for d in leaf.shape]
    return {"shape": dims, "dtype": getattr(leaf.dtype, "name", str(leaf.dtype))}


def tree_to_json(tree: Any, _depth: int = 0) -> Any:
    """A JSON description of a pytree of shapes that keeps its structure.

    A leaf is `{"shape", "dtype"}`; containers are `{"dict": {...}}`,
    `{"tuple": [...]}`, `{"list": [...]}`; None is `{"none": true}`. The runtime
    rebuilds the tree structure from this (no pickle).

    **Raises:** `TypeError` for containers jax treats differently from these
    (namedtuples, custom pytree nodes), non-string dict keys, or trees nested
    deeper than `MAX_TREE_DEPTH` (the loader would refuse them).
    """
    if _depth > MAX_TREE_DEPTH:
        raise TypeError(f"the tree nests deeper than {MAX_TREE_DEPTH} levels")
    if hasattr(tree, "shape") and hasattr(tree, "dtype"):
        return spec_to_json(tree)
    if tree is None:
        return {"none": True}
    if type(tree) is dict:
        if not all(isinstance(key, str) for key in tree):
            raise TypeError(f"dict keys must be strings, got {sorted(map(repr, tree))}")
        return {"dict": {key: tree_to_json(value, _depth + 1) for key, value in tree.items()}}
    if type(tree) is tuple:
        return {"tuple": [tree_to_json(value, _depth + 1) for value in tree]}
    if type(tree) is list:
        return {"list": [tree_to_json(value, _depth + 1) for value in tree]}
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
        signature_name=SIGNATURE_NAME,
        signature_context=SIGNATURE_CONTEXT.decode("ascii").encode("unicode_escape").decode("ascii"),
        signature_scheme=SIGNATURE_SCHEME,
        max_tree_depth=MAX_TREE_DEPTH,
    )
