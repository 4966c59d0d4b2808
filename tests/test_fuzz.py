"""Fuzzing the front end with mutated copies of models/ (hypothesis-driven, derandomized).

Property: parse -> resolve -> emit of any mutation of a model file either
succeeds or reports located diagnostics (`BuildError`); no other exception
escapes (an `InternalError` is a bug too), and no build takes more than a few
seconds.  About 400 mutations run here, budgeted by each file's build time so
the test stays well under a minute; `bench/fuzz.py` runs 1,000 and more
through the whole command line, writes included.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from fuzzing import MODELS, mutate, problems, time_limit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aotflax.driver import front_end

#: Seconds of mutations per model file, and the limit of one build.
BUDGET_S = 6.0
LIMIT_S = 20.0


def build(path: Path, data: bytes) -> list[str]:
    """Problems with building `data` as `path` (empty when the property holds)."""
    path.write_bytes(data)
    with time_limit(LIMIT_S):
        report = front_end([path], path.parent)
    return problems(report.diagnostics) if report.diagnostics else []


@pytest.mark.parametrize("model", MODELS, ids=[m.stem for m in MODELS])
def test_mutated_models_fail_cleanly(model: Path, tmp_path: Path) -> None:
    original = model.read_bytes()
    path = tmp_path / model.name
    start = time.perf_counter()
    assert build(path, original) == []
    report = front_end([path], tmp_path)
    assert not report.diagnostics, "the unmutated model must build"
    baseline = max(time.perf_counter() - start, 1e-3) / 2
    examples = max(30, min(100, int(BUDGET_S / baseline)))

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.randoms(use_true_random=False))
    def check(rng: random.Random) -> None:
        data, names = mutate(original, rng)
        try:
            found = build(path, data)
        except Exception as e:
            raise AssertionError(f"{names}: {type(e).__name__}: {e}\n--- mutated file:\n"
                                 f"{data.decode('utf-8', 'replace')}") from e
        assert not found, f"{names}: {found}\n--- mutated file:\n{data.decode('utf-8', 'replace')}"

    check()
