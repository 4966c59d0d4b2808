"""Generated code read as a reviewer reads it: bounded docstring summaries, no paragraph
that only repeats a call site, a function's last value returned directly, and imports
only of what a module uses (issue 14's bar, on shapes real model files have)."""

import ast
import re

import jax
import jax.numpy as jnp
import numpy as np
from helpers import build, emit, scratch_folder

from aotflax.driver import front_end
from aotflax.sharing import SUMMARY_WIDTH

#: A module with many hyperparameters, several of them long, used at three widths.
WIDE = """
class Block(nn.Module):
    def apply(self, x, features, kernel_init=nn.initializers.lecun_normal(),
              bias_init=nn.initializers.zeros, activation=nn.relu, use_bias=True,
              residual_scale=0.5, dtype=jnp.float32, precision=None, name_of_norm="ln"):
        y = nn.Dense(x, features, kernel_init=kernel_init, bias_init=bias_init,
                     bias=use_bias, dtype=dtype, precision=precision)
        return activation(y) * residual_scale

class Net(nn.Module):
    def apply(self, x):
        x = Block(x, 8)
        x = Block(x, 16)
        return Block(x, 4)

aot.target("net", Net, x=aot.f32[2, 3])
"""


def _functions(text: str) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef)}


def test_every_docstring_summary_line_fits_and_long_hyperparameters_move_below():
    text, _ = emit(WIDE)
    fns = _functions(text)
    for name, fn in fns.items():
        doc = ast.get_docstring(fn, clean=False)
        assert doc, name
        assert len(doc.splitlines()[0]) <= SUMMARY_WIDTH, (name, doc.splitlines()[0])
    doc = ast.get_docstring(fns["block"], clean=False)
    head, _, rest = doc.partition("\n\n")
    assert head == "Block.apply, from " + head.split(", from ")[1]
    paragraph = [line.strip() for line in rest.splitlines()]
    # every hyperparameter is there, and none is cut in two at a line end
    joined = " ".join(paragraph)
    for item in ("features=8|16|4", "activation=jax.nn.relu", "residual_scale=0.5",
                 'name_of_norm="ln"', "precision=None"):
        assert item in joined, item
    for line in paragraph:
        assert not line.endswith("=") and not line.endswith("module"), line
        assert len(line) <= 88, line


def test_a_short_signature_stays_on_the_summary_line():
    text, _ = emit("""
    class Head(nn.Module):
        def apply(self, x, n: int = 3):
            return nn.Dense(x, n)

    aot.target("serve", Head, x=aot.f32[2, 5])
    """)
    doc = ast.get_docstring(_functions(text)["head"], clean=False)
    assert doc.startswith("Head.apply(n=3), from ") and "\n" not in doc


def test_serves_paragraph_only_where_a_function_has_several_instances():
    text, _ = emit("""
    class Inner(nn.Module):
        def apply(self, x):
            return nn.relu(nn.Dense(x, 4))

    class Once(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4) * 2.0

    class Net(nn.Module):
        def apply(self, x):
            x = Inner(x, name="a")
            x = Inner(x, name="b")
            return Once(x, name="c")

    aot.target("net", Net, x=aot.f32[2, 4])
    """)
    fns = _functions(text)
    shared = ast.get_docstring(fns["inner"], clean=False)
    assert "Serves net (a, b)." in " ".join(shared.split())
    once = ast.get_docstring(fns["once"], clean=False)
    assert "Serves" not in once and "\n" not in once


def test_the_last_value_is_returned_directly_with_its_comment():
    m = build("""
    class Net(nn.Module):
        def apply(self, x):
            y = nn.Dense(x, 3, name="proj")
            return nn.relu(y + 1.0)

    aot.target("serve", Net, x=aot.f32[2, 4])
    """)
    text = m.__aotflax_text__
    body = text.split("def net(")[1].split("\n\n")[0]
    last = body.rstrip().splitlines()[-1]
    assert last.startswith("    return jax.nn.relu(")
    assert re.search(r"  # \S*model_\d+\.py:9  f32\[2, 3\]$", last)  # file:line and shape
    params, _ = m.serve.init(jax.random.key(0))
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 8
    y, _ = m.serve.apply(params, {}, x)
    p = params["proj"]
    np.testing.assert_allclose(y, jax.nn.relu(x @ p["kernel"] + p["bias"][None] + 1.0), rtol=1e-6)


def test_a_value_returned_twice_or_beside_state_keeps_its_name():
    m = build("""
    class Net(nn.Module):
        def apply(self, x):
            y = nn.Dense(x, 3)
            z = jnp.tanh(y)
            return z, z * 2.0, y

    aot.target("net", Net, x=aot.f32[2, 4])
    """)
    params, _ = m.net.init(jax.random.key(1))
    x = np.ones((2, 4), np.float32)
    (a, b, c), _ = m.net.apply(params, {}, x)
    d = params["Dense_0"]
    ref = x @ d["kernel"] + d["bias"][None]
    np.testing.assert_allclose(c, ref, rtol=1e-6)
    np.testing.assert_allclose(a, jnp.tanh(ref), rtol=1e-6)
    np.testing.assert_allclose(b, 2 * jnp.tanh(ref), rtol=1e-6)


def test_a_model_file_without_targets_imports_nothing_it_does_not_use():
    folder = scratch_folder()
    (folder / "layers.py").write_text(
        "from aotflax import nn\n\n\ndef act(x):\n    return nn.relu(x)\n")
    (folder / "net.py").write_text(
        "from aotflax import nn, aot\nfrom layers import act\n\n\n"
        "class Net(nn.Module):\n    def apply(self, x):\n        return act(nn.Dense(x, 2))\n\n\n"
        'aot.target("net", Net, x=aot.f32[1, 3])\n')
    report = front_end(sorted(folder.glob("*.py")), folder)
    assert not report.diagnostics
    texts = {f.out_rel: f.text for f in report.files}
    layers = next(t for rel, t in texts.items() if str(rel).endswith("layers.py"))
    assert "import" not in layers and "TARGETS = {}" in layers
    assert '"""\n\n\nTARGETS = {}\n' in layers  # two blank lines, as after any import
    net = next(t for rel, t in texts.items() if str(rel).endswith("net.py"))
    assert "import jax\n" in net and "import _runtime" in net
    compile(layers, "layers.py", "exec")


def test_snake_case_keeps_short_acronyms_whole():
    from aotflax.sharing import snake
    assert snake("ViT") == "vit" and snake("BiT") == "bit" and snake("ViTBlock") == "vit_block"
    assert snake("ResNetBlock") == "res_net_block" and snake("LSTMCell") == "lstm_cell"
    assert snake("ModelA") == "model_a" and snake("X_Y") == "x_y"


def test_variants_are_named_after_the_input_or_module_that_differs():
    text, _ = emit("""
    class Gate(nn.Module):
        def apply(self, x, aux=None):
            y = nn.Dense(x, 4, name="proj")
            if aux is not None:
                y = y + nn.Dense(aux, 4, name="proj_aux")
            return y

    class Attn(nn.Module):
        def apply(self, x):
            return nn.SelfAttention(x, num_heads=1)

    class Ff(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4)

    class PreNorm(nn.Module):
        def apply(self, x, fn):
            return fn(nn.LayerNorm(x))

    class Net(nn.Module):
        def apply(self, x):
            x = Gate(x)
            x = Gate(x, x)
            x = PreNorm(x, fn=Attn)
            return PreNorm(x, fn=Ff)

    aot.target("serve", Net, x=aot.f32[2, 3, 4])
    """)
    names = set(_functions(text))
    assert {"gate", "gate_with_aux"} <= names, names
    assert {"pre_norm_attn", "pre_norm_ff"} <= names, names
    assert not any("variant" in n for n in names), names


def test_a_loss_shared_by_targets_says_so():
    text, _ = emit("""
    import optax

    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    def mse(out, y):
        return jnp.mean((out - y) ** 2)

    aot.train_target("a", Net, loss=mse, optimizer=optax.sgd(0.1), x=aot.f32[2, 4],
                     y=aot.f32[2, 3])
    aot.train_target("b", Net, loss=mse, optimizer=optax.sgd(0.1), x=aot.f32[2, 4],
                     y=aot.f32[2, 3])
    """)
    doc = " ".join(ast.get_docstring(_functions(text)["mse"], clean=False).split())
    assert "Serves a, b as the loss." in doc and "((" not in doc


def test_children_state_fills_one_dict_the_function_returns():
    m = build("""
    class Net(nn.Module):
        def apply(self, x):
            x = nn.BatchNorm(x, use_running_average=False, momentum=0.9)
            return nn.BatchNorm(x * 2.0, use_running_average=False, momentum=0.9)

    aot.target("serve", Net, x=aot.f32[4, 3])
    """)
    body = m.__aotflax_text__.split("def net(")[1].split("\n\n\n")[0]
    assert re.search(r'\n    new_batch_stats = \{\}  # \S+:\d+\n', body)
    assert 'x, new_batch_stats["BatchNorm_0"] = ' in body
    assert re.search(r"\n    return \w+, new_batch_stats$", body)
    assert "batchnorm_0_stats" not in body
    params, state = m.serve.init(jax.random.key(0))
    x = np.arange(12, dtype=np.float32).reshape(4, 3) ** 1.5
    _, new = m.serve.apply(params, state, x)
    stats = new["batch_stats"]
    assert set(stats) == {"BatchNorm_0", "BatchNorm_1"}
    np.testing.assert_allclose(stats["BatchNorm_0"]["mean"], 0.1 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["BatchNorm_0"]["var"], 0.9 + 0.1 * x.var(0), rtol=1e-5)
    np.testing.assert_allclose(stats["BatchNorm_1"]["mean"], 0.0, atol=1e-5)


def test_a_bias_of_several_axes_is_named_once_on_its_line():
    m = build("""
    class Net(nn.Module):
        def apply(self, x):
            return nn.DenseGeneral(x, features=(2, 3), name="proj")

    aot.target("serve", Net, x=aot.f32[2, 5, 4])
    """)
    line = next(ln for ln in m.__aotflax_text__.splitlines() if "dot_general" in ln)
    assert line.count('params["proj"]["bias"]') == 1, line
    assert 'jnp.expand_dims(params["proj"]["bias"], (0, 1))' in line
    params, _ = m.serve.init(jax.random.key(2))
    x = np.linspace(-1, 1, 40, dtype=np.float32).reshape(2, 5, 4)
    y, _ = m.serve.apply(params, {}, x)
    p = params["proj"]
    ref = np.einsum("blf,fgh->blgh", x, np.asarray(p["kernel"])) + np.asarray(p["bias"])[None, None]
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_an_init_variant_initializes_then_calls_its_forward_function():
    m = build("""
    class Centered(nn.Module):
        def apply(self, x):
            b = self.param("b", (1, x.shape[-1]), lambda key, shape: -jnp.mean(x, 0, keepdims=True))
            return jnp.tanh(x + b) * 3.0

    class Net(nn.Module):
        def apply(self, x):
            return Centered(nn.Dense(x, 3), name="c")

    aot.target("serve", Net, x=aot.f32[4, 2])
    """)
    text = m.__aotflax_text__
    init = text.split("def centered_init(")[1].split("\n\n\n")[0]
    assert re.search(r"\n    return centered\(params, \w+\)  # \S+:\d+  f32\[4, 3\]$", init)
    assert "jnp.tanh" not in init and text.count("jnp.tanh(") == 1  # the forward pass once
    x = np.linspace(-2, 2, 8, dtype=np.float32).reshape(4, 2)
    params, _ = m.serve.init(jax.random.key(0), x)
    d = params["Dense_0"]
    h = x @ np.asarray(d["kernel"]) + np.asarray(d["bias"])[None]
    np.testing.assert_allclose(params["c"]["b"], -h.mean(0, keepdims=True), rtol=1e-5, atol=1e-6)
    y, _ = m.serve.apply(params, {}, x)
    np.testing.assert_allclose(y, np.tanh(h - h.mean(0, keepdims=True)) * 3.0, rtol=1e-5,
                               atol=1e-6)


def test_docstring_layout_does_not_depend_on_the_numbers_in_it():
    """A symbolic dimension is emitted at two sizes that must give the same lines
    (`symbolic.reconcile`): a summary line and a paragraph break in the same places
    whatever the widths of their numbers."""
    from aotflax.sharing import _wrap, summary
    small = "Hyperparameters: " + ", ".join(f"d{i}=7" for i in range(20)) + "."
    large = "Hyperparameters: " + ", ".join(f"d{i}=70001" for i in range(20)) + "."
    assert len(_wrap(small)) == len(_wrap(large))
    assert [ln.count("=") for ln in _wrap(small)] == [ln.count("=") for ln in _wrap(large)]
    short, long_ = "M.apply(n=7), " + "x" * 70 + ".", "M.apply(n=70001), " + "x" * 70 + "."
    assert (summary(short, "M.apply.") == short) == (summary(long_, "M.apply.") == long_)


def test_docstring_paragraph_lines_are_docstring_lines_for_symbolic_sizes():
    from aotflax.symbolic import _docstring_mask
    lines = ['def f(x):', '    """M.apply, from m.py:1.', '', '    Hyperparameters: n=3.',
             '    """', '    y = x + 1  # m.py:2', '    """One line."""', '    return y']
    assert _docstring_mask(lines) == [False, True, True, True, True, False, True, False]
