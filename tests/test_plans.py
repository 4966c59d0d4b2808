"""Shape plans (`aotflax/ops/plans.py`): a layer call served from a plan emits what the
rule as written emits, keys tell apart values the rules treat differently, and errors
are never cached."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import build_errors, emit

from aotflax.driver import front_end
from aotflax.ops import plans
from aotflax.ops.registry import CallError
from aotflax.summary import summarize_target

ROOT = Path(__file__).resolve().parent.parent


def _front_end(path: Path) -> tuple[str, list[int]]:
    report = front_end([path], path.parent)
    assert not report.diagnostics
    f = report.files[0]
    totals = [summarize_target([t], f.program.relpath).total.flops.const
              for t in f.program.targets]
    return f.text, totals


@pytest.mark.parametrize("name", ["resnet.py", "cnn.py"])
def test_planned_layers_emit_what_the_rules_as_written_emit(name, monkeypatch):
    path = ROOT / "models" / name
    calls = {"hits": 0}
    lookup = plans.lookup

    def counted(*args, **kwargs):
        found = lookup(*args, **kwargs)
        calls["hits"] += found is not None
        return found

    monkeypatch.setattr(plans, "lookup", counted)
    planned = _front_end(path)
    assert calls["hits"] > 0  # the plans were used
    monkeypatch.setattr(plans, "lookup", lambda *args, **kwargs: None)
    assert _front_end(path) == planned  # same code, same FLOPs


def test_keys_tell_apart_values_that_render_differently():
    text, _ = emit("""
        class M(nn.Module):
            def apply(self, x):
                x = nn.BatchNorm(x, epsilon=0.0, use_running_average=True)
                x = nn.BatchNorm(x, epsilon=-0.0, use_running_average=True)
                x = nn.BatchNorm(x, momentum=1, use_running_average=False)
                x = nn.BatchNorm(x, momentum=1.0, use_running_average=False)
                x = nn.Conv(x, 4, (3, 3), bias=True)
                return nn.Conv(x, 4, (3, 3), bias=1)

        aot.target("t", M, x=aot.f32[2, 8, 8, 4])
    """)
    assert "epsilon=0.0" in text and "epsilon=-0.0" in text
    assert text.count("momentum=1.0") == 2  # int and float momentum: one value, two keys
    assert text.count(' + params["Conv_') == 2  # bias=True and bias=1 both declare a bias


def test_an_error_is_reported_every_time_and_never_cached():
    # two modules make the same failing call: each reports it, at its own line
    errors = build_errors("""
        class A(nn.Module):
            def apply(self, x):
                return nn.BatchNorm(x, axis=5)

        class B(nn.Module):
            def apply(self, x):
                return nn.BatchNorm(x, axis=5)

        aot.target("a", A, x=aot.f32[2, 4])
        aot.target("b", B, x=aot.f32[2, 4])
    """)
    lines = [e for e in errors.splitlines() if "error[AOT203]" in e]
    assert len(lines) == 2, errors
    assert all("axis=5 is out of range for an input of rank 2" in e for e in lines)
    assert lines[0].split(":")[1] != lines[1].split(":")[1]  # two lines of the file


def test_lookup_never_stores_a_failed_plan():
    ran = []

    def compute(call, x):
        ran.append(x)
        raise CallError("AOT203", "bad")

    class Call:
        entry = object()
        args = {"x": None, "k": 1}

    from aotflax.program import Tensor

    call = Call()
    call.args = {"x": Tensor((2, 3), "float32"), "k": 1}
    assert plans.lookup(call, compute, "x", ("k",)) is None
    assert plans.lookup(call, compute, "x", ("k",)) is None
    assert len(ran) == 2  # computed again: nothing was stored


def test_exact_keys():
    assert plans.exact_key(1) != plans.exact_key(True)
    assert plans.exact_key(1) != plans.exact_key(1.0)
    assert plans.exact_key(0.0) != plans.exact_key(-0.0)
    assert plans.exact_key((1, 2)) != plans.exact_key([1, 2])
    assert plans.exact_key((1, object())) is None  # not plain static data: no key
