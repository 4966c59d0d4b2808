"""bench/mutation.py's mutants still apply to the tree (the mutation run itself is not in CI)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import mutation  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("mutant", mutation.MUTANTS, ids=lambda m: m.name)
def test_mutant_applies_once_and_names_existing_tests(mutant: mutation.Mutant) -> None:
    text = (ROOT / mutant.path).read_text()
    mutated = mutation.apply(text, mutant)
    assert mutated != text
    assert not any("test_golden" in t for t in mutant.tests)  # snapshots see every change
    for test in mutant.tests:
        assert (ROOT / test.split("::")[0]).is_file(), test
    if mutant.path.endswith(".py"):
        compile(mutated, mutant.path, "exec")  # a syntax error would be a trivial kill


def test_the_three_seeded_bugs_of_issue_11_are_measured() -> None:
    seeded = {m.what for m in mutation.MUTANTS if m.seeded}
    assert seeded == {"train step drops the updated optimizer state",
                      "default kernel initializer he_normal instead of lecun_normal",
                      "an explicit name= advances the automatic counter"}
