"""Runs `compile.compile_target` for many targets, in parallel processes if asked.

Each worker imports the freshly written generated package (generated code,
never a model file) and compiles its targets; progress goes to stderr so long
compiles show what they are doing.
"""

from __future__ import annotations

import importlib
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Sequence

_PACKAGE = "_aotflax_build_output"


def _target(out: Path, module: str, name: str) -> Any:
    if _PACKAGE not in sys.modules:
        from .verify import load_package

        load_package(out.resolve(), _PACKAGE)
    return importlib.import_module(f"{_PACKAGE}.{module}").TARGETS[name]


def compile_one(out: str, module: str, name: str, platforms: Sequence[str] | None,
                sign_key: bytes | None = None) -> float:
    """Compile one target's artifacts (signed with `sign_key` if given); returns the seconds
    it took."""
    from .compile import compile_target

    start = time.perf_counter()
    target = _target(Path(out), module, name)
    plats = [p for p in target.platforms if not platforms or p in platforms] or None
    compile_target(target, Path(out) / "artifacts", platforms=plats, sign_key=sign_key)
    if getattr(target, "train_step_fn", None) is not None:
        # a training target also ships its train step (see Target.train_view)
        compile_target(target.train_view(), Path(out) / "artifacts", platforms=plats,
                       sign_key=sign_key)
    return time.perf_counter() - start


def compile_rows(out: Path, rows: list[dict], *, platforms: Sequence[str] | None,
                 jobs: int, sign_key: bytes | None = None) -> None:
    total = len(rows)
    if jobs <= 1 or total == 1:
        for i, row in enumerate(rows, 1):
            print(f"[{i}/{total}] compiling {row['key']} ({','.join(row['platforms'])})",
                  file=sys.stderr, flush=True)
            row["seconds"] = compile_one(str(out), row["module"], row["target"], platforms,
                                         sign_key)
            row["compiled"] = True
        return
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {pool.submit(compile_one, str(out), r["module"], r["target"], platforms,
                               sign_key): r for r in rows}
        for i, fut in enumerate(as_completed(futures), 1):
            row = futures[fut]
            row["seconds"] = fut.result()
            row["compiled"] = True
            print(f"[{i}/{total}] compiled {row['key']} in {row['seconds']:.1f} s",
                  file=sys.stderr, flush=True)
