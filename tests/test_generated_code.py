"""The committed generated modules read like a hand-written port (issue 14).

One function per distinct computation: no two functions of a module have the
same code once their numbers are masked; the zoo's modules stay short enough to
review; every line of a function body carries its `file:line` comment.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from helpers import build, emit

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(p for p in (ROOT / "generated").glob("*.py") if not p.name.startswith("_"))


class _MaskNumbers(ast.NodeTransformer):
    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, (int, float, complex)) and not isinstance(node.value, bool):
            return ast.copy_location(ast.Constant(0), node)
        return node


def _masked_functions(text: str) -> dict[str, str]:
    """Top-level function name -> its code (arguments, decorators, body) with every
    number replaced by 0 and without its docstring."""
    out = {}
    for node in ast.parse(text).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]
        copy = ast.FunctionDef(name="f", args=node.args, body=body or [ast.Pass()],
                               decorator_list=node.decorator_list, returns=None,
                               type_params=[])
        out[node.name] = ast.unparse(_MaskNumbers().visit(ast.fix_missing_locations(copy)))
    return out


def _duplicates(text: str) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    out = []
    for name, code in _masked_functions(text).items():
        if code in seen:
            out.append((seen[code], name))
        seen.setdefault(code, name)
    return out


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_no_function_is_emitted_twice_with_only_its_numbers_changed(path: Path) -> None:
    assert _duplicates(path.read_text()) == []


def test_the_duplicate_check_sees_functions_that_differ_only_in_numbers() -> None:
    text = "def a(x):\n    return x * 2 + 1.5\n\n\ndef b(x):\n    return x * 3 + 0.5\n"
    assert _duplicates(text) == [("a", "b")]
    assert _duplicates(text.replace("x * 3", "x - 3")) == []


def test_the_zoo_stays_short_enough_to_review() -> None:
    lines = {p.stem: len(p.read_text().splitlines()) for p in MODULES}
    assert lines["resnet"] <= 1000, lines
    assert sum(lines.values()) < 2500, lines


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_every_computed_line_names_its_dsl_line(path: Path) -> None:
    """Each statement of a model function (not the targets' glue) ends with
    `# models/<file>.py:<line>`."""
    text = path.read_text()
    tree = ast.parse(text)
    lines = text.splitlines()
    glue = re.compile(r"_\w+_(apply|loss|train_step|init_opt|optimizer|init)$")
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or glue.match(node.name):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                continue  # the docstring
            if isinstance(stmt, ast.Return):
                continue  # a variable tree's leaves carry their lines, a result none
            first = lines[stmt.lineno - 1]
            assert re.search(r"  # models/\w+\.py:\d+", first), (node.name, first)


WIDTHS = """
class Block(nn.Module):
    def apply(self, x, features, strides=(1, 1)):
        y = nn.Conv(x, features, (3, 3), strides=strides, bias=False)
        y = nn.relu(y)
        if x.shape != y.shape:
            x = nn.Conv(x, features, (1, 1), strides=strides, name="proj")
        return x + y

class Net(nn.Module):
    def apply(self, x):
        for i, width in enumerate((4, 4, 8, 8, 16)):
            x = Block(x, width, strides=(2, 2) if i in (2, 4) else (1, 1))
        return jnp.mean(x, axis=(1, 2))

aot.target("small", Net, x=aot.f32[2, 8, 8, 3])
aot.target("big", Net, x=aot.f32[4, 16, 16, 3])
"""


@pytest.fixture(scope="module")
def widths():
    return build(WIDTHS)


def test_instances_and_targets_share_one_function_per_computation(widths) -> None:
    """Five blocks of three widths in two targets of two input sizes: one block function
    without a projection, one with it (the stride differs: a keyword argument)."""
    text = widths.__aotflax_text__
    functions = _masked_functions(text)
    blocks = sorted(n for n in functions if n.startswith("block"))
    assert blocks == ["block", "block_variables", "block_with_proj", "block_with_proj_variables"]
    assert text.count("def net") == 2  # the computation and its variable tree
    assert "strides=(2, 2)" in text and "*, strides" in text
    # sizes that differ between the uses are written by name
    assert "f32[batch, height, width, features]" in text.split("def block(")[1]
    assert "f32[batch, height // 4, width // 4, 16]" in text.split("def net(")[1]
    # a size that depends on the stride each use passes reads it (blocks with and
    # without a stride share the projected block)
    assert "f32[batch, height // strides[0], width // strides[1], features]" in \
        text.split("def block_with_proj(")[1].split("\ndef ")[0]


def test_shared_functions_compute_what_their_instances_did(widths) -> None:
    import jax
    import numpy as np

    for t, shape in ((widths.small, (2, 8, 8, 3)), (widths.big, (4, 16, 16, 3))):
        params, state = t.init(jax.random.key(0))
        x = np.linspace(-1, 1, int(np.prod(shape)), dtype=np.float32).reshape(shape)
        y, _ = t.apply(params, state, x)
        assert y.shape == (shape[0], 16)
        # the reference: the same layers written out in jax by hand
        h = x
        for i in range(5):
            p = params[f"Block_{i}"]
            s = (2, 2) if i in (2, 4) else (1, 1)
            conv = jax.lax.conv_general_dilated(h, p["Conv_0"]["kernel"], s, "SAME",
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))
            out = jax.nn.relu(conv)
            if "proj" in p:
                h = jax.lax.conv_general_dilated(h, p["proj"]["kernel"], s, "SAME",
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
                h = h + p["proj"]["bias"].reshape((1, 1, 1, -1))
            h = h + out
        np.testing.assert_allclose(y, np.mean(h, axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_emitted_code_that_does_not_compile_is_an_internal_error() -> None:
    """The build's self-check (`compile_module`, whose code becomes the `.pyc`)."""
    from aotflax.diagnostics import InternalError
    from aotflax.generate import compile_module

    code = compile_module("def f(x):\n    return x\n", "net.py", "models/net.py")
    assert code.co_filename == "net.py"
    with pytest.raises(InternalError, match=r"models/net\.py does not parse: .*line 2"):
        compile_module("def f(x):\n    return x +\n", "net.py", "models/net.py")


@pytest.mark.parametrize(("code", "uses"), [
    ("np.float32(1.0)", True), ("x = (np.int8(3), y)", True), ("\nnp.e", True),
    ("jnp.zeros(3)", False), ("a.np.x", False), ("_np.x", False), ("np_x.y", False),
    ("jnp.np.x", False), ("énp.x", False), ("x = jnp.ones(2) + np.ones(2)", True)])
def test_the_module_imports_numpy_exactly_when_its_code_names_np(code: str, uses: bool) -> None:
    from aotflax.generate import NP

    assert bool(NP.search(code)) is uses


PADDINGS = """
from jax import lax


class CausalConv(nn.Module):
    def apply(self, x, features, kernel_size=(2, 3), strides=None):
        strides = strides or (1, 1)
        k_h, k_w = kernel_size
        padding = ((k_h - 1, 0), (k_w // 2, k_w // 2))
        kernel = self.param("kernel", kernel_size + (x.shape[-1], features),
                            nn.initializers.lecun_normal())
        return lax.conv_general_dilated(x, kernel, window_strides=strides, padding=padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


class Net(nn.Module):
    def apply(self, x):
        x = CausalConv(x, 4, kernel_size=(2, 3))
        x = CausalConv(x, 4, kernel_size=(1, 3))
        return CausalConv(x, 4, kernel_size=(2, 5), strides=(2, 2))

aot.target("net", Net, x=aot.f32[1, 8, 8, 3])
"""


def test_a_display_no_hyperparameter_explains_is_one_keyword_named_after_its_keyword() -> None:
    """PixelCNN++'s causal convolutions differ in padding tuples computed from the kernel
    size: the shared function takes `padding` and `window_strides` whole (not `size_1`,
    `size_2`, ...), and a kernel shape reads the items of `kernel_size`."""
    import jax
    import numpy as np

    m = build(PADDINGS)
    text = m.__aotflax_text__
    assert "def causal_conv(params, x, *, window_strides, padding):" in text
    assert "window_strides=window_strides, padding=padding" in text
    assert "padding=((1, 0), (1, 1))" in text and "padding=((0, 0), (1, 1))" in text
    assert "padding=((1, 0), (2, 2))" in text
    assert "(kernel_size[0], kernel_size[1], in_channels, 4)" in text  # the variable tree
    assert "causal_conv_variables(kernel_size=(2, 5), in_channels=4)" in text
    assert "size_1" not in text
    params, _ = m.net.init(jax.random.key(0))
    x = np.linspace(-1, 1, 192, dtype=np.float32).reshape(1, 8, 8, 3)
    y, _ = m.net.apply(params, {}, x)
    h = x
    for i, (k, s) in enumerate((((2, 3), (1, 1)), ((1, 3), (1, 1)), ((2, 5), (2, 2)))):
        kernel = params[f"CausalConv_{i}"]["kernel"]
        assert kernel.shape[:2] == k
        pad = ((k[0] - 1, 0), (k[1] // 2, k[1] // 2))
        h = jax.lax.conv_general_dilated(h, kernel, s, pad,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(y, h, rtol=1e-6, atol=1e-6)


def test_a_size_that_is_an_item_of_a_tuple_hyperparameter_is_named_by_it() -> None:
    """A kernel of shape `window` in three instances of three windows: its comment reads
    `f32[window[0], window[1]]`, as a reader would write it, not invented names."""
    text, _ = emit("""
    class Box(nn.Module):
        def apply(self, x, window):
            k = self.param("kernel", window, nn.initializers.ones)
            return x * jnp.sum(k)

    class Net(nn.Module):
        def apply(self, x):
            return Box(x, (1, 3)) + Box(x, (3, 1)) + Box(x, (2, 2))

    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    box = text.split("def box(")[1].split("\ndef ")[0]
    assert 'k = params["kernel"]' in box and "f32[window[0], window[1]]" in box


def test_an_input_axis_named_like_a_hyperparameter_is_the_input_one() -> None:
    """PyramidNet's blocks take `channels` (their output width) and inputs of varying
    channels: the input's axis reads `in_channels`, not `channels_`."""
    text, _ = emit("""
    class Block(nn.Module):
        def apply(self, x, channels):
            x = nn.relu(x)
            return nn.Conv(x, channels, (1, 1))

    class Net(nn.Module):
        def apply(self, x):
            for c in (4, 8, 16):
                x = Block(x, c)
            return x

    aot.target("net", Net, x=aot.f32[2, 4, 4, 3])
    """)
    block = text.split("def block(")[1].split("\ndef ")[0]
    assert "f32[2, 4, 4, in_channels]" in block and "f32[2, 4, 4, channels]" in block
    assert "channels_" not in block
