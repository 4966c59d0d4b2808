"""`aotflax.quoting`: what a model file says reaches generated code only as quoted data.

Each function is checked on hand-picked hostile strings (quotes that end a
literal or a docstring, backslashes, newlines, NUL, lone surrogates,
bidirectional overrides, names Python normalizes to others) and on arbitrary
text drawn by hypothesis: a literal evaluates back to its value, a docstring
parses back to its text and nothing else, a comment stays one comment, and an
identifier is either refused or exactly a safe ASCII name.
"""

from __future__ import annotations

import ast
import io
import math
import tokenize

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aotflax import quoting
from aotflax.quoting import QuotingError, comment, docstring, identifier, literal, subscript

#: Strings that break out of naive quoting, one way each.
HOSTILE = [
    '"""; __import__("os").system("echo PWNED"); """',
    "'''; __import__('os').system('echo PWNED'); '''",
    '" + __import__("os").system("echo PWNED") + "',
    'learning_rate=__import__("os").system("echo PWNED"), momentum',
    'd": __import__("os").system("echo PWNED") or 1, "e',
    "a\\", "\\", '"', '""', '""""', "x\"", "\\\"",
    "line\nbreak", "carriage\rreturn", "nul\0byte", "tab\there", "form\x0cfeed",
    "lone \ud800 surrogate", "bidi \u202e override \u2066", "zero\u200bwidth",
    "ｊｎｐ", "＿runtime", "é", "\U0001f600", "{}", "{0}", "%s", "\\N{BULLET}", "#", "",
]


def _evaluate(source: str):
    """Evaluate a literal's source, after checking it is only data (and float()/complex())."""
    tree = ast.parse(source, mode="eval")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name) and node.func.id in ("float", "complex")
            assert all(isinstance(a, (ast.Constant, ast.UnaryOp, ast.Call)) for a in node.args)
        else:
            assert isinstance(node, (ast.Expression, ast.Constant, ast.Tuple, ast.List,
                                     ast.Dict, ast.UnaryOp, ast.USub, ast.Load, ast.Name))
    return eval(compile(tree, "<literal>", "eval"),  # noqa: S307 - checked above to be data
                {"__builtins__": {}, "float": float, "complex": complex})


def _same(a, b) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, complex):
        return isinstance(b, complex) and _same(a.real, b.real) and _same(a.imag, b.imag)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(
            _same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b and (
        not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b))


@pytest.mark.parametrize("text", HOSTILE)
def test_string_literal_is_the_string(text: str) -> None:
    code = literal(text)
    assert _same(_evaluate(code), text)
    assert code.isprintable() and "\n" not in code  # one line, nothing hidden


@pytest.mark.parametrize("value", [
    float("inf"), float("-inf"), float("nan"), -0.0, 1e300, 5e-324, 2**62, -(2**62), True,
    None, complex(1, float("inf")), complex(float("nan"), -1), 1j, (), (1,), (1, "a"),
    [1, [2, (3,)]], {"a": (None, 1.5)}, ("\"'\\",), ...,
])
def test_literal_round_trips(value) -> None:
    assert _same(_evaluate(literal(value)), value)


def test_literal_refuses_objects() -> None:
    with pytest.raises(QuotingError):
        literal(object())
    with pytest.raises(QuotingError):
        literal({1, 2})


@pytest.mark.parametrize("text", HOSTILE)
def test_docstring_is_one_docstring(text: str) -> None:
    source = f'def f():\n    """{docstring(text)}"""\n'
    tree = ast.parse(source)
    (fn,) = tree.body
    assert len(fn.body) == 1, source  # nothing escaped into a statement
    assert ast.get_docstring(fn, clean=False) == text


@pytest.mark.parametrize("text", HOSTILE)
def test_comment_is_one_comment(text: str) -> None:
    source = f"x = 1  # {comment(text)}\n"
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
              if t.type not in (tokenize.NEWLINE, tokenize.ENDMARKER)]
    assert [t.type for t in tokens] == [tokenize.NAME, tokenize.OP, tokenize.NUMBER,
                                        tokenize.COMMENT]
    assert len(ast.parse(source).body) == 1


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(st.text())
def test_any_text_survives_quoting(text: str) -> None:
    assert _evaluate(literal(text)) == text
    fn = ast.parse(f'def f():\n    """{docstring(text)}"""\n').body[0]
    assert len(fn.body) == 1 and ast.get_docstring(fn, clean=False) == text
    assert "\n" not in comment(text) and "\r" not in comment(text)


@pytest.mark.parametrize("name", ["x", "Dense_0", "_private", "batch_stats", "type", "match",
                                  "a" * quoting.MAX_IDENTIFIER])
def test_identifier_accepts_names(name: str) -> None:
    assert identifier(name) == name


@pytest.mark.parametrize("name, why", [
    ("ｊｎｐ", "not ASCII"), ("é", "not ASCII"), ("class", "keyword"), ("None", "keyword"),
    ("a b", "not a Python identifier"), ("a\0b", "not a Python identifier"),
    ("1x", "not a Python identifier"), ("", "not a Python identifier"),
    ('x": 1, "y', "not a Python identifier"), ("a" * (quoting.MAX_IDENTIFIER + 1), "longer"),
    ("x\u200b", "not a Python identifier"), (3, "must be a string"),
])
def test_identifier_refuses(name, why: str) -> None:
    with pytest.raises(QuotingError, match=why):
        identifier(name)


def test_normalize_reads_names_as_python_does() -> None:
    assert quoting.normalize("ｊｎｐ") == "jnp"
    assert quoting.normalize("＿runtime") == "_runtime"
    assert quoting.normalize("ﬁle") == "file"
    assert quoting.normalize("x") == "x"
    # and CPython agrees: the full-width spelling binds the ASCII name
    scope: dict = {}
    exec(compile("ｊｎｐ = 1", "<t>", "exec"), {"__builtins__": {}}, scope)  # noqa: S102
    assert scope == {"jnp": 1}


def test_subscript_quotes_every_key() -> None:
    code = subscript("params", ('a"]; x = ["', "kernel"))
    tree = ast.parse(code, mode="eval").body
    keys = []
    while isinstance(tree, ast.Subscript):
        keys.append(tree.slice.value)
        tree = tree.value
    assert isinstance(tree, ast.Name) and tree.id == "params"
    assert keys[::-1] == ['a"]; x = ["', "kernel"]
    with pytest.raises(QuotingError):
        subscript("params; import os", ("a",))


@pytest.mark.parametrize("value", [slice(2), slice(1, None), slice(None, 3, 2),
                                   (slice(0, 2), 1), [slice(None)]])
def test_a_static_slice_as_a_value_is_code_that_makes_it(value) -> None:
    # an argument, not a subscript (`x[0:2]` is written by indexing itself): `0:2` alone
    # would not even parse
    from aotflax.values import to_code

    assert eval(compile(ast.parse(to_code(value), mode="eval"), "<t>", "eval")) == value  # noqa: S307
