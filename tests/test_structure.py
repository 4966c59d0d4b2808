"""Emit renders a function once per structure (`emit.structure`).

A function of the same structure as one already rendered gets that text with its
own callees' placeholders and its own arrays in the comments; these tests check it
is exactly what rendering it on its own gives, and that the key tells apart what
renders differently.  Sharing's scan for numbers is spelled for speed: it finds what
its plain spelling does.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import emit as emit_source
from hypothesis import given, settings
from hypothesis import strategies as st

from aotflax import emit, generate, sharing
from aotflax.driver import front_end
from aotflax.program import FileProgram

ROOT = Path(__file__).resolve().parent.parent


def _program(path: Path) -> FileProgram:
    report = front_end([path], path.parent)
    assert not report.diagnostics
    program = report.files[0].program
    assert program is not None
    return program


def _render_all(program: FileProgram) -> tuple[emit.Renderer, list[emit.Body]]:
    """Every function of the program rendered in the order `sharing.plan` renders them."""
    renderer = emit.Renderer(program, set(emit.RESERVED))
    for fn in sharing.all_functions(program):
        for kind in ("apply", "init") if fn.init_name else ("apply",):
            renderer.ref(fn, kind)
    bodies = []
    i = 0
    while i < len(renderer.units):
        bodies.append(renderer.render(*renderer.units[i]))
        i += 1
    return renderer, bodies


def _seen(body: emit.Body) -> tuple:
    return ([(line.code, line.where, [id(t) for t in body.shows(line)]) for line in body.lines],
            body.args, body.result, body.takes_rng, [(id(f), k) for f, k in body.calls])


@pytest.mark.parametrize("model", ["resnet.py", "seq2seq.py", "transformer.py"])
def test_a_function_of_a_known_structure_renders_as_on_its_own(
        model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    program = _program(ROOT / "models" / model)
    shared, bodies = _render_all(program)
    monkeypatch.setattr(emit, "structure", lambda *args: None)
    alone, expected = _render_all(program)
    assert shared.units == alone.units  # the same placeholders, in the same order
    assert [_seen(b) for b in bodies] == [_seen(b) for b in expected]
    if model == "resnet.py":  # most of its functions are instances of a few structures
        assert len(shared.rendered) * 2 < len(bodies)


def test_the_key_tells_apart_numbers_and_reads_sizes_from_the_arguments() -> None:
    _, program = emit_source("""
        class Block(nn.Module):
            def apply(self, x, strides=(1, 1)):
                return nn.relu(nn.Conv(x, x.shape[-1], (3, 3), strides))

        class Net(nn.Module):
            def apply(self, x):
                x = Block(x)
                x = Block(x, strides=(2, 2))
                return Block(nn.Conv(x, 4, (1, 1)))

        aot.target("net", Net, x=aot.f32[2, 8, 8, 3])
    """)
    blocks = [fn for fn in program.functions if fn.origin == "Block.apply"]
    keys = [emit.structure(fn, "apply", fn.body) for fn in blocks]
    assert len(blocks) == 3 and all(k is not None for k in keys)
    first, strided, wider = (k[0] for k in keys if k is not None)
    assert first != strided  # a stride is a number in the code
    assert first == wider  # 3 or 4 channels: read from the arguments' shapes
    text = generate.emit_file(program, "m")
    assert "strides" in text  # the strided block is the same function, with a keyword


#: What `sharing.split_numbers` finds, plainly: a string literal (skipped) or a number.
_PLAIN = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|(?<![\w.\x00])'
                    r"(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?j?)(?![\w.])")


def _plain_split(text: str) -> tuple[list[str], list[str]]:
    segments, numbers, last = [], [], 0
    for m in _PLAIN.finditer(text):
        if m.group(1) is not None:
            segments.append(text[last:m.start()])
            numbers.append(m.group(1))
            last = m.end()
    return segments + [text[last:]], numbers


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789.eEj+-_ax\"'\\\n\x00( é")),
               max_size=24))
def test_the_numbers_of_code_are_split_as_the_plain_scan_splits_them(text: str) -> None:
    assert sharing.split_numbers(text) == _plain_split(text)
    plain_strings = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'')
    assert sharing._STRING.sub("", text) == plain_strings.sub("", text)


def test_the_numbers_of_generated_modules_are_split_as_the_plain_scan_splits_them() -> None:
    for path in sorted((ROOT / "generated").glob("*.py")):
        text = path.read_text()
        assert sharing.split_numbers(text) == _plain_split(text), path.name
    segments, numbers = sharing.split_numbers('f(x, 3, "a 4", 1e-5, y2, 0.5j)')
    assert numbers == ["3", "1e-5", "0.5j"] and segments[1] == ', "a 4", '
