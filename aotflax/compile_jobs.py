"""Runs `compile.compile_target` for many targets, in parallel processes if asked.

Each worker imports the freshly written generated package (generated code,
never a model file) and compiles its targets; on a terminal, a status line
on stderr says which (`progress.py`).
"""

from __future__ import annotations

import hashlib
import importlib
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .progress import Progress


def _target(out: Path, module: str, name: str) -> Any:
    # One package name per output folder: a process that builds two folders keeps them apart.
    root = out.resolve()
    package = "_aotflax_build_output_" + hashlib.sha256(str(root).encode()).hexdigest()[:12]
    if package not in sys.modules:
        from .verify import load_package

        load_package(root, package)
    return importlib.import_module(f"{package}.{module}").TARGETS[name]


@dataclass(frozen=True)
class Hardware:
    """What the command line asks the compile step for (see `compile.compile_target`)."""

    platforms: tuple[str, ...] = ()
    tpu_topologies: tuple[str, ...] = ()
    gpu_targets: tuple[str, ...] = ()


def compile_one(out: str, module: str, name: str, hw: Hardware,
                sign_key: bytes | None = None) -> dict[str, Any]:
    """Compiles one target's artifacts (manifests signed with `sign_key` if given).

    **Returns:** `{"seconds": ..., "error": message or None}`; the error is set
    when named hardware could not be compiled for (`CrossCompileError`).
    """
    from .compile import CrossCompileError, compile_target

    start = time.perf_counter()
    target = _target(Path(out), module, name)
    plats = [p for p in target.platforms if not hw.platforms or p in hw.platforms] or None
    views = [target]
    if getattr(target, "train_step_fn", None) is not None:
        views.append(target.train_view())  # a training target also ships its train step
    try:
        for view in views:
            compile_target(view, Path(out) / "artifacts", platforms=plats,
                           tpu_topologies=hw.tpu_topologies, gpu_targets=hw.gpu_targets,
                           sign_key=sign_key)
    except CrossCompileError as error:
        return {"seconds": time.perf_counter() - start, "error": str(error)}
    return {"seconds": time.perf_counter() - start, "error": None}


def _done(row: dict, result: dict[str, Any]) -> None:
    row["seconds"] = result["seconds"]
    row["error"] = result["error"]
    row["compiled"] = result["error"] is None


def compile_rows(out: Path, rows: list[dict], *, hw: Hardware, jobs: int,
                 sign_key: bytes | None = None) -> None:
    """Compiles every row's target, `jobs` at a time; each row gets `seconds`,
    `compiled` and `error`.  Progress shows on a terminal (see `progress.py`)."""
    total = len(rows)
    progress = Progress()
    try:
        if jobs <= 1 or total == 1:
            for i, row in enumerate(rows, 1):
                progress.update(f"[{i}/{total}] compiling {row['key']} "
                                f"({','.join(row['platforms'])})")
                _done(row, compile_one(str(out), row["module"], row["target"], hw, sign_key))
            return
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = {pool.submit(compile_one, str(out), r["module"], r["target"], hw,
                                   sign_key): r for r in rows}
            progress.update(f"[0/{total}] compiling with {jobs} processes")
            for i, fut in enumerate(as_completed(futures), 1):
                row = futures[fut]
                _done(row, fut.result())
                progress.update(f"[{i}/{total}] compiled {row['key']} in "
                                f"{row['seconds']:.1f} s")
    finally:
        progress.clear()
