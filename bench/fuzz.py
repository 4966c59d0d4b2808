"""Fuzz the whole command line with mutated model files; count every way a build can go wrong.

    python bench/fuzz.py [-n 1000] [--seed 0] [--jobs 2] [--timeout 60] [--show 5]
    python bench/fuzz.py --print-case 17      # the mutated file of case #17, to reproduce
    python bench/fuzz.py --folder DIR [--folder DIR2 ...]   # mutate the model files of DIR

Each mutation (see tests/fuzzing.py: deleted, swapped or duplicated lines, wrong
keywords and numbers, random tokens, truncation, non-UTF-8 bytes) of a seed is
built exactly as `aot_build.py FILE -o OUT --no-compile` would (in-process
`aotflax.driver.main`, verify and the atomic writes included) into an output
folder that already holds a model's build.  The seeds are the files of models/
and the hostile model files of tests/hostile_cases.py (strings that try to
escape into generated code, a 100,000-term sum, static values that grow
without bound, names generated code uses); the first cases of a run are the
hostile files themselves, unmutated.  `--seeds models` fuzzes models/ only.

`--folder DIR` fuzzes other code instead: each DIR is built as one models
folder (`aot_build.py DIR -o OUT --no-compile`, imports between its files
resolved), and each case mutates one of its `.py` files, chosen at random, and
builds the whole folder.  Real code reaches far more of the resolver than the
zoo; to fuzz the flax.nn corpus, prepare its cases with targets appended and
hand over their folders:

    python ../shared/corpus/check.py --python .venv/bin/python --build-only --keep
    python bench/fuzz.py -n 1000 --folder /tmp/aotflax-corpus-*/*/src

(`--keep` prints where it left the prepared folders.)
Outcomes:

- built ok: exit 0, and every file in the output folder is complete (parses);
- clean error: exit 1, every `error[...]` located (`path:line:col`) and shown with
  its source line, no traceback, and the output folder byte-identical;
- unlocated: exit 1 with an error that has no location (whole-file codes aside);
- internal errors: exit 2 (aotflax reported a bug in itself);
- tracebacks: an exception escaped the command line, or one was printed;
- hangs: no result within --timeout seconds;
- partial writes: a failed build changed the output folder, or a successful one
  left an incomplete file;
- code execution: a string of the model file ran (it left its marker file).

Everything but the first two columns must be 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fuzzing import MODELS, WHOLE_FILE_CODES, Hang, mutate, time_limit  # noqa: E402
from hostile_cases import MARKER, sources  # noqa: E402

#: Seeds by file name: the models, then the hostile files (named to be module names).
SEEDS: dict[str, bytes] = {m.name: m.read_bytes() for m in MODELS}
HOSTILE: dict[str, bytes] = {f"hostile_{name}.py": text.encode()
                             for name, text in sorted(sources().items())}

OUTCOMES = ("built ok", "clean errors", "unlocated", "internal errors", "tracebacks", "hangs",
            "partial writes", "code execution")
_ERROR = re.compile(r"^(?:(?P<loc>\S.*?:\d+:\d+): )?error\[(?P<code>AOT\d{3})\]", re.M)

_templates: dict[str, Path] = {}
#: Where workers build their templates (forked from `main`, which removes it at the end).
_scratch: list[Path] = []


def _template_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="aotflax-fuzz-template-",
                                 dir=_scratch[0] if _scratch else None))


def _cli(argv: list[str]) -> tuple[int, str]:
    from aotflax.driver import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        rc = main(argv)
    return rc, buf.getvalue()


def _folder_template(folder: Path) -> Path:
    """The output folder of the unmutated model folder (built once per worker)."""
    key = str(folder)
    if key not in _templates:
        out = _template_folder() / "out"
        rc, text = _cli([str(folder), "-o", str(out), "--no-compile"])
        if rc != 0:
            raise RuntimeError(f"{folder} does not build:\n{text}")
        _templates[key] = out
    return _templates[key]


def _template(name: str) -> Path:
    """The output folder of the unmutated model `name` (built once per worker); a hostile
    seed's builds go into the output of the first model, which a failure must not touch."""
    model = MODELS[0] if name in HOSTILE else ROOT / "models" / name
    if model.name not in _templates:
        folder = _template_folder()
        shutil.copy(model, folder / model.name)
        rc, out = _cli([str(folder / model.name), "-o", str(folder / "out"), "--no-compile"])
        if rc != 0:
            raise RuntimeError(f"{model.name} does not build:\n{out}")
        _templates[model.name] = folder / "out"
    return _templates[model.name]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _complete(folder: Path) -> bool:
    for p in folder.rglob("*"):
        if p.suffix == ".py":
            compile(p.read_text(), str(p), "exec")
        elif p.suffix == ".json":
            json.loads(p.read_text())
    return True


def _seeds(which: str) -> dict[str, bytes]:
    return SEEDS if which == "models" else {**SEEDS, **HOSTILE}


def _case(index: int, seed: int, which: str = "all") -> tuple[str, bytes, list[str]]:
    """Case `index`: a hostile file as it is (the first ones), else a mutated seed."""
    seeds = _seeds(which)
    hostile = sorted(HOSTILE) if which != "models" else []
    if index < len(hostile):
        return hostile[index], HOSTILE[hostile[index]], ["unmutated"]
    rng = random.Random(seed * 1_000_003 + index)
    # half the mutations start from a model of the zoo, half from a hostile file
    name = rng.choice(sorted(SEEDS) if not hostile or rng.random() < 0.5 else hostile)
    data, names = mutate(seeds[name], rng)
    return name, data, names


def _folder_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if p.is_file())


def _folder_case(index: int, seed: int, folders: list[Path]) -> tuple[Path, Path, bytes, list[str]]:
    """Case `index` of `--folder` runs: (folder, file of it, mutated bytes, mutations)."""
    rng = random.Random(seed * 1_000_003 + index)
    folder = rng.choice(folders)
    path = rng.choice(_folder_files(folder))
    data, names = mutate(path.read_bytes(), rng)
    return folder, path, data, names


def run_case(case: tuple[int, int, float, str, tuple[str, ...]]) -> tuple[int, str, str]:
    """Build case `index` (seeded by `seed`); returns (index, outcome, detail)."""
    index, seed, timeout, which, folders = case
    work = Path(tempfile.mkdtemp(prefix="aotflax-fuzz-"))
    cwd = os.getcwd()
    try:
        out = work / "out"
        if folders:
            folder, original, data, names = _folder_case(index, seed, [Path(f) for f in folders])
            shutil.copytree(folder, work / "models", symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
            path = work / "models" / original.relative_to(folder)
            path.write_bytes(data)
            shutil.copytree(_folder_template(folder), out)
            name = f"{folder.parent.name}/{folder.name}/{original.relative_to(folder)}"
            argv = [str(work / "models"), "-o", str(out), "--no-compile"]
        else:
            name, data, names = _case(index, seed, which)
            (work / "models").mkdir()
            path = work / "models" / name
            path.write_bytes(data)
            shutil.copytree(_template(name), out)
            argv = [str(path), "-o", str(out), "--no-compile"]
        before = _snapshot(out)
        what = f"#{index} {name} {'+'.join(names)}"
        os.chdir(work)  # a string that escaped into generated code would leave MARKER here
        try:
            with time_limit(timeout):
                rc, text = _cli(argv)
        except Hang:
            return index, "hangs", what
        except BaseException as e:  # noqa: BLE001 - that is what we count
            return index, "tracebacks", f"{what}: {type(e).__name__}: {e}"
        finally:
            os.chdir(cwd)
        if (work / MARKER).exists():
            return index, "code execution", f"{what}: a string of the model file ran"
        if "Traceback" in text:
            return index, "tracebacks", f"{what}:\n{text}"
        if rc == 0:
            try:
                _complete(out)
            except Exception as e:  # noqa: BLE001
                return index, "partial writes", f"{what}: {type(e).__name__}: {e}"
            return index, "built ok", what
        if rc == 2:
            return index, "internal errors", f"{what}:\n{text}"
        if _snapshot(out) != before:
            return index, "partial writes", f"{what}: a failed build changed the output folder"
        errors = list(_ERROR.finditer(text))
        if rc != 1 or not errors or any(m["loc"] is None and m["code"] not in WHOLE_FILE_CODES
                                        for m in errors):
            return index, "unlocated", f"{what} (exit {rc}):\n{text}"
        return index, "clean errors", what
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=1000, help="number of mutations (1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="worker processes (2)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per build (60)")
    p.add_argument("--show", type=int, default=5, help="failures to print per outcome")
    p.add_argument("--seeds", choices=("all", "models"), default="all",
                   help="mutate models/ and the hostile files (all), or models/ only")
    p.add_argument("--folder", type=Path, action="append", default=[], metavar="DIR",
                   help="mutate the model files of DIR, built as one folder (repeatable)")
    p.add_argument("--print-case", type=int, metavar="I", help="print case #I and exit")
    args = p.parse_args(argv)
    folders = tuple(str(f.resolve()) for f in args.folder)
    for f in args.folder:
        if not f.is_dir() or not _folder_files(f):
            p.error(f"{f}: not a folder of model files")
    if args.print_case is not None and folders:
        folder, path, data, names = _folder_case(args.print_case, args.seed,
                                                 [Path(f) for f in folders])
        print(f"# {path} {'+'.join(names)}")
        sys.stdout.buffer.write(data)
        return 0
    if args.print_case is not None:
        name, data, names = _case(args.print_case, args.seed, args.seeds)
        print(f"# {name} {'+'.join(names)}")
        sys.stdout.buffer.write(data)
        return 0

    start = time.perf_counter()
    counts: Counter[str] = Counter()
    details: dict[str, list[str]] = {}
    cases = [(i, args.seed, args.timeout, args.seeds, folders) for i in range(args.n)]
    _scratch.append(Path(tempfile.mkdtemp(prefix="aotflax-fuzz-")))
    ctx = mp.get_context("fork")
    pool = ctx.Pool(args.jobs, maxtasksperchild=100)
    try:
        pending = [pool.apply_async(run_case, (c,)) for c in cases]
        for done, (case, result) in enumerate(zip(cases, pending), 1):
            try:
                _, outcome, detail = result.get(timeout=args.timeout * 3 + 120)
            except mp.TimeoutError:
                outcome, detail = "hangs", f"#{case[0]}: worker gave no answer"
            counts[outcome] += 1
            if outcome not in ("built ok", "clean errors"):
                details.setdefault(outcome, []).append(detail)
            if done % 100 == 0:
                print(f"  {done}/{args.n} cases, {time.perf_counter() - start:.0f} s",
                      file=sys.stderr, flush=True)
    finally:
        pool.terminate()
        shutil.rmtree(_scratch.pop(), ignore_errors=True)
    seconds = time.perf_counter() - start

    if folders:
        files = sum(len(_folder_files(Path(f))) for f in folders)
        print(f"aotflax fuzz: {args.n} cases from {len(folders)} folder(s) of {files} model "
              f"files (seed {args.seed}), {seconds:.0f} s with {args.jobs} jobs")
    else:
        seeds = _seeds(args.seeds)
        print(f"aotflax fuzz: {args.n} cases from {len(seeds)} seed files ({len(MODELS)} models, "
              f"{len(seeds) - len(MODELS)} hostile; seed {args.seed}), {seconds:.0f} s with "
              f"{args.jobs} jobs")
    rows = [("cases", args.n)] + [(o, counts[o]) for o in OUTCOMES]
    width = max(len(r[0]) for r in rows)
    for name, n in rows:
        print(f"  {name.ljust(width)}  {n:>6}")
    for outcome, items in details.items():
        print(f"\n{outcome}: {len(items)}")
        for d in items[:args.show]:
            print("  " + d.replace("\n", "\n    ")[:3000])
    bad = sum(counts[o] for o in OUTCOMES[2:])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
