"""What the front end leaves behind: a build's program is freed by reference counting.

A resolved program holds module-level values (a target's module, a loss closure) whose
globals once pointed back at the resolver, so every build left its resolver, its
specializations and the whole program as cyclic garbage: on a large build, collections
of a hundred thousand objects (bench/static_stages.py).
"""

from __future__ import annotations

import gc
from pathlib import Path

from aotflax.driver import front_end

ROOT = Path(__file__).resolve().parent.parent


def _left_by(run) -> list[str]:
    """Names of aotflax classes whose objects only the cyclic collector frees after `run`'s
    result is dropped."""
    gc.collect()
    gc.disable()
    try:
        result = run()
        gc.collect()  # cycles the run itself made and dropped: not what this asks
        gc.set_debug(gc.DEBUG_SAVEALL)
        del result
        gc.collect()
        return sorted({f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
                       if type(o).__module__.startswith("aotflax.")})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_a_built_program_is_freed_by_reference_counting():
    path = ROOT / "models" / "resnet.py"  # user modules, shared functions, a training target

    def build():
        report = front_end([path], path.parent)
        assert not report.diagnostics
        assert report.files[0].program.targets
        return report

    left = _left_by(build)
    # the parsed file's module-level names refer to each other (a class and its globals),
    # like Python's own modules; nothing resolved may hang on them
    kept = [name for name in left if not name.startswith(("aotflax.ir.", "aotflax.diagnostics."))
            and name not in ("aotflax.values.ModuleRef", "aotflax.values.UserModule",
                             "aotflax.values.Closure", "aotflax.resolve.toplevel.ModuleGlobals")]
    assert kept == []
