"""`aotflax inspect ARTIFACT_DIR`: check built artifacts before deploying them.

For every target folder under ARTIFACT_DIR (one target's folder, or any folder
above several, such as `generated/artifacts`), prints the manifest in words
(target, inputs and outputs, platforms, devices and topology, versions),
verifies every file's size and sha256, checks the signature when a key is
given, and says whether this host can load each executable and why not. With
`--run-check`, each executable this host can run is deserialized and run once
on zeros in a subprocess with a time limit: bytes that pass their hash but are
corrupt can crash XLA, and that crash should happen here, not in production.

The checks are the loader's own: the generated `_runtime.py` is rendered from
its template and its public checking functions (`read_manifest`,
`read_artifact`, `host_problem`, `run_on_zeros`) do the work, so `inspect`
accepts exactly what `Target.load` accepts. Exit status: 0 when every folder
passes, 1 when any check fails, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .artifacts import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    SigningKeyError,
    human_bytes,
    read_regular,
    render_runtime,
    signing_key,
)

__all__ = ["find_target_folders", "inspect_folder", "main"]

#: Trees are printed leaf by leaf, but a subtree below the second level with more
#: leaves than `_DEEP_LEAVES`, or any with more children than `_MAX_CHILDREN`, is
#: shown as a count of its arrays.
_DEEP_LEAVES = 3
_MAX_CHILDREN = 8


def runtime_module() -> types.ModuleType:
    """The generated runtime, rendered from this aotflax's template and imported (once)."""
    name = "_aotflax_inspect_runtime"
    if name in sys.modules:
        return sys.modules[name]
    from .emit import TEMPLATES

    module = types.ModuleType(name)
    module.__file__ = str(TEMPLATES / "runtime.py.j2")
    sys.modules[name] = module
    exec(compile(render_runtime(), module.__file__, "exec"), module.__dict__)
    return module


def find_target_folders(root: Path) -> list[Path]:
    """Every folder at or below `root` that holds a manifest, found without following links."""
    if (root / MANIFEST_NAME).exists():
        return [root]
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        if MANIFEST_NAME in files:
            found.append(Path(folder))
    return found


# --- one folder ----------------------------------------------------------------------


class Report:
    """What `inspect_folder` found: lines to print and whether any check failed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lines: list[str] = []
        self.failed = False

    def add(self, label: str, text: str) -> None:
        self.lines.append(f"  {label + ':':<11} {text}")

    def fail(self, label: str, text: str) -> None:
        self.failed = True
        self.add(label, f"FAILED: {text}")


def inspect_folder(folder: Path, *, key: bytes | None = None, run_check: bool = False,
                   timeout: float = 120.0) -> Report:
    """Checks one target's artifact folder as the loader would, and describes it.

    **Arguments:** `folder`: the target's folder; `key`: the signing key to
    verify with (None: the signature is not checked); `run_check`: also run each
    executable this host can run once on zeros, in a subprocess; `timeout`:
    seconds each run may take.

    **Returns:** the report.
    """
    rt = runtime_module()
    report = Report(folder)
    try:
        manifest = rt.read_manifest(folder, verify_key=key, label=folder.name)
    except rt.ArtifactError as error:
        report.fail("manifest", str(error))
        return report
    _describe(report, manifest)
    _signature(report, folder, key)
    _files(report, rt, folder, manifest)
    loadable = _platforms(report, rt, manifest)
    if run_check:
        for name, problem in sorted(loadable.items()):
            if problem is None:
                _run_check(report, folder, name, key, timeout)
            else:
                report.add("run check", f"{name}: skipped (this host cannot run it)")
    return report


def _describe(report: Report, manifest: dict[str, Any]) -> None:
    report.add("target", f"{manifest['module']}.{manifest['target']}")
    report.add("built by", f"aotflax {manifest.get('aotflax_version', '?')}, jax {manifest['jax']}, "
               f"jaxlib {manifest['jaxlib']} (manifest format {manifest['format_version']})")
    report.add("source", f"sha256 {manifest['source_sha256']}")
    inputs = ", ".join(f"{name}: {_tree(spec)}" for name, spec in manifest["inputs"].items())
    report.add("inputs", inputs or "none")
    report.add("outputs", _tree(manifest["outputs"]))
    if isinstance(manifest.get("param_count"), int):
        report.add("params", f"{manifest['param_count']:,}")
    rng = manifest["rng"]
    report.add("rng", f"{rng['impl']} keys, raw data uint32{rng['key_shape']}" if rng else "none")
    known = {"format_version", "target", "module", "source_sha256", "generated_sha256",
             "aotflax_version", "jax", "jaxlib", "build_key", "inputs", "outputs", "param_count",
             "rng", "executables", "skipped", "export", "xla_flags"}
    if manifest.get("xla_flags"):
        report.add("XLA_FLAGS", manifest["xla_flags"])
    for key in sorted(set(manifest) - known):  # buckets, hosts, ...: written by newer builds
        report.add(key, json.dumps(manifest[key], sort_keys=True)[:300])


def _signature(report: Report, folder: Path, key: bytes | None) -> None:
    signed = (folder / SIGNATURE_NAME).exists()
    if key is not None:
        report.add("signature", "valid (hmac-sha256 with the key given)")
    else:
        report.add("signature", "present, not checked (no key given)" if signed else "none")


def _files(report: Report, rt: Any, folder: Path, manifest: dict[str, Any]) -> None:
    entries = [(f"executable {p}", e) for p, e in sorted(manifest["executables"].items())]
    if manifest["export"]:
        entries.append(("export", manifest["export"]))
    for what, entry in entries:
        try:
            rt.read_artifact(folder, entry, label=folder.name)
        except rt.ArtifactError as error:
            report.fail("file", f"{entry['file']} ({what}): {error}")
            continue
        report.add("file", f"ok  {entry['file']} ({what}, {human_bytes(entry['size'])}, sha256 verified)")


def _platforms(report: Report, rt: Any, manifest: dict[str, Any]) -> dict[str, str | None]:
    """One line per native executable and per platform without one.

    **Returns:** executable key -> why this host cannot load it (None: it can).
    """
    loadable: dict[str, str | None] = {}
    for name, entry in sorted(manifest["executables"].items()):
        try:
            problem = rt.host_problem(manifest, name)
        except rt.ArtifactError as error:
            report.fail(name, str(error))
            continue
        loadable[name] = problem
        here = "this host can load it" if problem is None else f"this host cannot load it: {problem}"
        report.add(name, f"native executable for {_hardware(entry)}; {here}")
    for platform, why in sorted(manifest.get("skipped", {}).items()):
        report.add(platform, f"no native executable ({why})")
    export = manifest["export"]
    report.add("export", f"portable jax.export for {', '.join(export['platforms'])}"
               if export else "none")
    return loadable


def _hardware(entry: dict[str, Any]) -> str:
    """The devices an executable entry was built for, in words."""
    words = f"{entry['device_count']} x {entry['device_kind']}"
    slice_ = entry.get("slice")
    if isinstance(slice_, dict) and slice_.get("name"):
        hosts = slice_.get("hosts", 1)
        words += f", topology {slice_['name']} on {hosts} host{'s' if hosts != 1 else ''}"
    elif entry.get("topology"):
        words += f", topology {entry['topology']}"
    if entry.get("gpu_target"):
        words += f", GPU target {entry['gpu_target']}"
    isa = entry.get("cpu", {}).get("max_isa")
    if isa:
        words += f", max ISA {isa}"
    return words


def _run_check(report: Report, folder: Path, name: str, key: bytes | None,
               timeout: float) -> None:
    """Runs the executable `name` once on zeros in a child process (see `_child`)."""
    command = [sys.executable, "-m", "aotflax.inspection", "--run-one", str(folder), name]
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, input=key or b"", capture_output=True, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": _pythonpath()})
    except subprocess.TimeoutExpired:
        report.fail("run check", f"{name}: did not finish within {timeout:g} s (killed)")
        return
    seconds = time.perf_counter() - start
    out = proc.stdout.decode("utf-8", "replace").strip().splitlines()
    if proc.returncode < 0:
        report.fail("run check", f"{name}: the process crashed with {_signal(-proc.returncode)} "
                    "while loading or running the executable; do not deploy these artifacts")
    elif proc.returncode != 0 or not out:
        why = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        report.fail("run check", f"{name}: {why[0]}")
    else:
        report.add("run check", f"{name}: loaded and ran on zeros in {seconds:.2f} s "
                   f"(in a subprocess) -> {out[-1]}")


def _signal(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _pythonpath() -> str:
    """The child imports this very aotflax, wherever it was imported from."""
    here = str(Path(__file__).resolve().parent.parent)
    rest = os.environ.get("PYTHONPATH")
    return os.pathsep.join([here, rest] if rest else [here])


def _child(folder: str, name: str) -> int:
    """The `--run-check` child: load one executable, run it on zeros, print its outputs."""
    rt = runtime_module()
    key = sys.stdin.buffer.read() or None
    try:
        manifest = rt.read_manifest(folder, verify_key=key)
        leaves = rt.run_on_zeros(folder, manifest, name)
    except rt.ArtifactError as error:
        print(error, file=sys.stderr)
        return 1
    print(", ".join(_format(dtype, shape) for shape, dtype in leaves) or "no outputs")
    return 0


# --- formatting -----------------------------------------------------------------------


def _format(dtype: str, shape: Sequence[Any]) -> str:
    return f"{dtype}[{', '.join(str(d) for d in shape)}]"


def _spec(node: dict[str, Any]) -> str:
    return _format(node["dtype"], node["shape"])


def _leaves(node: dict[str, Any]) -> list[dict[str, Any]]:
    if "shape" in node:
        return [node]
    children = node.get("dict", {}).values() if "dict" in node else node.get(
        "tuple", node.get("list", []))
    return [leaf for child in children for leaf in _leaves(child)]


def _tree(node: dict[str, Any], depth: int = 0) -> str:
    """The tree in Python's notation; below the second level, a large subtree is a count."""
    if "shape" in node:
        return _spec(node)
    if "none" in node:
        return "None"
    children = node.get("dict", node.get("tuple", node.get("list", [])))
    count = len(_leaves(node))
    if (depth >= 2 and count > _DEEP_LEAVES) or len(children) > _MAX_CHILDREN:
        return f"<{count} arrays>"
    if "dict" in node:
        items = [f"{k}: {_tree(v, depth + 1)}" for k, v in node["dict"].items()]
        return "{" + ", ".join(items) + "}"
    items = [_tree(v, depth + 1) for v in children]
    if "list" in node:
        return "[" + ", ".join(items) + "]"
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


# --- command line -----------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aotflax inspect", description="Check built artifacts before deploying them: "
        "the manifest in words, every file's hash, the signature, whether this host can load "
        "each executable.")
    p.add_argument("artifact_dir", help="a target's artifact folder, or a folder above several "
                   "(generated/artifacts)")
    p.add_argument("--key", metavar="FILE", help="verify the signatures with the key in FILE "
                   "(default: the AOTFLAX_SIGN_KEY environment variable, if set)")
    p.add_argument("--run-check", action="store_true", help="load and run each executable this "
                   "host can run once on zeros, in a subprocess")
    p.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                   help="time limit of each run check (120)")
    return p


def _key(args: argparse.Namespace) -> bytes | None:
    if args.key:
        try:
            return signing_key(read_regular(Path(args.key), 1 << 16, follow=True))
        except OSError as error:
            raise SigningKeyError(
                f"cannot read the key {args.key}: {error.strerror or error}") from None
    value = os.environ.get("AOTFLAX_SIGN_KEY")
    return signing_key(value) if value else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--run-one"] and len(argv) == 3:
        return _child(argv[1], argv[2])
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    root = Path(args.artifact_dir)
    if not root.is_dir():
        print(f"error: {root}: not a folder", file=sys.stderr)
        return 1
    try:
        key = _key(args)
    except SigningKeyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    folders = find_target_folders(root)
    if not folders:
        print(f"error: no {MANIFEST_NAME} at or below {root}; build the artifacts first "
              "(python aot_build.py models/)", file=sys.stderr)
        return 1
    failed = 0
    for folder in folders:
        report = inspect_folder(folder, key=key, run_check=args.run_check,
                                timeout=args.timeout)
        print(folder.as_posix())
        print("\n".join(report.lines))
        failed += report.failed
    verdict = f"{failed} of {len(folders)} failed" if failed else "all passed"
    print(f"\n{len(folders)} artifact folder(s) checked: {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
