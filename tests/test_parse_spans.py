"""The parse stage's spans: in characters, and covering what each node's own text covers.

CPython's `ast` gives UTF-8 byte columns and locates neither a definition's name, a
parameter without its default, a comprehension clause nor an f-string field; the
parse stage finds those in the text.  Each case names a node of a small model file
and the text its span must cover (carets and "did you mean" notes point there).
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from aotflax import ir
from aotflax.diagnostics import BuildError, SourceFile, Span
from aotflax.parse import parse_model


def parse(text: str) -> ir.ModelFile:
    return parse_model(SourceFile("m.py", text), "models/m.py")


def covered(span: Span) -> str:
    """The text a span covers."""
    lines = span.file.text.split("\n")
    if span.line == span.end_line:
        return lines[span.line - 1][span.col: span.end_col]
    middle = lines[span.line: span.end_line - 1]
    return "\n".join([lines[span.line - 1][span.col:], *middle,
                      lines[span.end_line - 1][: span.end_col]])


def value(m: ir.ModelFile, i: int = 0) -> Any:
    return m.body[i].value  # type: ignore[union-attr]


#: (source, the node, the text its span covers)
CASES: list[tuple[str, Callable[[ir.ModelFile], Any], str]] = [
    # columns are characters, also after wide characters and inside strings
    ("é = '日本'; t = (é, 'ü')\n", lambda m: value(m, 1).elts[1], "'ü'"),
    ("x = 'ü' + ü\n", lambda m: value(m).right, "ü"),
    # a parenthesized expression's span leaves out its parentheses
    ("x = (a + b)\n", lambda m: value(m), "a + b"),
    ("x = (a + b) * c\n", lambda m: value(m), "(a + b) * c"),
    ("x = ( a, (b) ,)\n", lambda m: value(m), "a, (b) ,"),
    ("x = (a), (b)\n", lambda m: value(m), "(a), (b)"),
    ("x = ( )\n", lambda m: value(m), ""),
    ("x = (a and b) and c\n", lambda m: value(m).values[0], "a and b"),
    # generator expressions, comprehension clauses (to the end of the last one)
    ("x = f(y for y in (z))\n", lambda m: value(m).args[0], "y for y in (z)"),
    ("x = [(y) for y in z if y for w in v]\n",
     lambda m: value(m).generators[0], " for y in z if y for w in v"),
    ("x = [(y) for y in z if y for w in v]\n",
     lambda m: value(m).generators[1], " for w in v"),
    # parameters: a parameter is its name with its stars; the list runs to its ')'
    ("def f(a: int = 1, *args, b=2, **kw): pass\n",
     lambda m: m.body[0].params.params[1], "*args"),
    ("def f(a: int = 1, *args, b=2, **kw): pass\n",
     lambda m: m.body[0].params.params[3], "**kw"),
    ("def f(a, b=(1), ): pass\n", lambda m: m.body[0].params, "a, b=(1), "),
    ("l = lambda x , y=(1) : x\n", lambda m: value(m).params, "x , y=(1) "),
    ("def ｆ(x): pass\n", lambda m: m.body[0].name_span, "ｆ"),
    ("class \\\n  A: pass\n", lambda m: m.body[0].name_span, "A"),
    # slices keep the blanks after a last ':'
    ("x = a[1: , ::2]\n", lambda m: value(m).index.elts[0], "1: "),
    ("x = a[1: , ::2]\n", lambda m: value(m).index, "a[1: , ::2]"),
    # f-string fields are located in the text, expressions inside them too
    ("x = 'é' + f'ü{(a)!r:>4}{ b }'\n", lambda m: value(m).right.parts[1], "{(a)!r:>4}"),
    ("x = 'é' + f'ü{(a)!r:>4}{ b }'\n", lambda m: value(m).right.parts[1].value, "a"),
    ("x = f'''é\n{ a +\n  bé }'''\n", lambda m: value(m).parts[1].value.right, "bé"),
    ("x = f'{ {\"é\": 1}[\"é\"] }'\n", lambda m: value(m).parts[0].value.index, '"é"'),
]


@pytest.mark.parametrize("source, node, text", CASES)
def test_span_covers_the_nodes_own_text(source: str, node: Callable, text: str) -> None:
    got = node(parse(source))
    assert covered(got if isinstance(got, Span) else got.span) == text


def test_string_pieces_join_as_written() -> None:
    # adjacent pieces join from the right: literal text stays apart from an f-string's parts
    parts = value(parse("x = 'a' f'{b}c' 'd' f'e'\n")).parts
    assert [p if isinstance(p, str) else "FV" for p in parts] == ["a", "FV", "c", "de"]
    assert value(parse("x = 'a' f'b' \"c\"\n")).value == "abc"
    # escapes: resolved in f-string text (a quote too), kept in a raw f-string
    assert value(parse('x = f"\\"{a}\\n"\n')).parts[0] == '"'
    assert value(parse('x = rf"\\n{a}"\n')).parts[0] == "\\n"
    assert value(parse('x = f"a{{b}}{c}"\n')).parts[0] == "a{b}"


def test_a_docstring_line_is_skipped_whole() -> None:
    # `"""doc"""; x = 1` is one line: the function body starts after it
    f = parse('def f():\n    """doc"""; x = 1\n    return 2\n').body[0]
    assert f.docstring == "doc" and [type(s).__name__ for s in f.body] == ["Return"]
    # a body on the header's line keeps its docstring statement
    g = parse('def g(): "doc"; return 2\n').body[0]
    assert g.docstring == "doc" and len(g.body) == 2


def test_class_body_lines() -> None:
    c = parse("class C:\n    '''doc'''\n    pass; pass\n    x = 1; y: int\n"
              "    a, b = 1, 2\n    def f(self): pass\n").body[0]
    assert c.docstring == "doc" and [m.name for m in c.methods] == ["f"]
    assert [type(s).__name__ for s in c.fields] == ["Assign", "AnnAssign"]
    assert [o.binds for o in c.others] == [("a", "b")]
    assert covered(c.others[0].span) == "a, b = 1, 2"


def test_del_of_a_parenthesized_tuple() -> None:
    assert len(parse("del (a, b)\n").body[0].targets) == 2
    assert len(parse("del (a, b),\n").body[0].targets) == 1


def test_unsupported_statements_are_located_in_characters() -> None:
    m = parse("é = 1\nclass A(nn.Module, total=M): pass\nx = 'ü' + f'{y=}'\n")
    assert covered(m.body[1].where) == "total=M" and m.body[1].binds == ("A",)
    assert covered(m.body[2].where) == "{y=}" and "'=' specifiers" in m.body[2].message


def test_syntax_errors_are_cpythons() -> None:
    for source, words, text in [
        ("x = 'é' + (1 2)\n", "forgot a comma", "1 2"),
        ("return 1\n", "'return' outside function", "return 1"),
        # the compiler's own columns are bytes: the caret is under the second 'a' all the same
        ("def é(a, a): pass\n", "duplicate argument", "a"),
        ("é = 'ü'; nonlocal y\n", "nonlocal declaration", "nonlocal y"),
    ]:
        with pytest.raises(BuildError) as e:
            parse(source)
        d = e.value.diagnostics[0]
        assert d.code == "AOT100" and words in d.message and covered(d.span) == text, d


def test_deep_nesting_is_a_located_error() -> None:
    with pytest.raises(BuildError) as e:
        parse("x = " + " + ".join(["1"] * 5000) + "\n")
    assert "nested too deeply" in e.value.diagnostics[0].message
