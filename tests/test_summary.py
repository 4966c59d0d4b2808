"""`aotflax summary`, `aotflax --list-ops` and the operation table's reference page."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from helpers import write_model

from aotflax.driver import main
from aotflax.ops import REGISTRY
from aotflax.ops.docs import COMMAND, reference
from aotflax.progress import Progress
from aotflax.summary import summarize

ROOT = Path(__file__).resolve().parent.parent
MODELS = sorted((ROOT / "models").glob("*.py"))


def _leaves(tree) -> list:
    return jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct))


@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.stem)
def test_totals_equal_the_generated_shapes_of_every_zoo_target(model):
    import importlib

    generated = importlib.import_module(f"generated.{model.stem}")
    for s in summarize(model, output=ROOT / "generated"):
        target = generated.TARGETS[s.target]
        params = _leaves(target.PARAM_SHAPES)
        state = _leaves(target.STATE_SHAPES)
        assert s.total.params == sum(math.prod(p.shape) for p in params), s.target
        assert s.total.param_bytes == sum(math.prod(p.shape) * p.dtype.itemsize
                                          for p in params)
        assert s.state == sum(math.prod(p.shape) for p in state), s.target
        assert s.total.state_bytes == sum(math.prod(p.shape) * p.dtype.itemsize
                                          for p in state)


def test_rows_nest_by_linen_path_with_subtree_counts():
    (s,) = summarize(ROOT / "models" / "resnet.py", "resnet18_eval")
    import generated.resnet as generated

    params = generated.resnet18_eval.PARAM_SHAPES
    rows = {r.path: r for r in s.rows}
    block = rows[("ResNetBlock_2",)]
    assert block.module == "ResNetBlock"
    assert block.params == sum(math.prod(p.shape) for p in _leaves(params["ResNetBlock_2"]))
    # the projection shortcut of the first strided block, nested under it
    assert rows[("ResNetBlock_2", "conv_proj")].module == "Conv"
    assert rows[("ResNetBlock_2", "conv_proj")].outputs == ["f32[2, 4, 4, 16]"]
    # a row's FLOPs include its children's: the block itself adds relu, the residual add
    # and the last relu on [2, 4, 4, 16]
    assert block.flops.const == sum(r.flops.const for p, r in rows.items()
                                    if len(p) == 2 and p[0] == "ResNetBlock_2") + 3 * 512
    # the root's own ops: relu (2 x 16 x 16 x 8), a 3x3 max pool to 8 x 8 (8 compares per
    # output), the mean over 1 x 1 positions of 64 features
    own = 2 * 16 * 16 * 8 + 8 * (2 * 8 * 8 * 8) + 2 * 64
    assert rows[()].flops.const == sum(r.flops.const for p, r in rows.items()
                                       if len(p) == 1) + own
    order = [r.path for r in s.rows]
    assert order.index(("ResNetBlock_2",)) < order.index(("ResNetBlock_2", "Conv_0"))


def test_outputs_of_composite_layers_and_shared_modules():
    source = """
    class M(nn.Module):
        def apply(self, tokens):
            embed = nn.Embed.shared(num_embeddings=11, features=8, name="embed")
            x = embed(tokens)
            x = nn.SelfAttention(x, num_heads=2, deterministic=True)
            return embed.attend(nn.relu(x))

    aot.target("t", M, tokens=aot.i32[2, 5])
    """
    (s,) = summarize(write_model(source))
    rows = {r.path: r for r in s.rows}
    # attention's output is its `out` projection's; the shared embedding is called twice
    assert rows[("SelfAttention_0",)].outputs == ["f32[2, 5, 8]"]
    assert rows[("SelfAttention_0", "query")].outputs == ["f32[2, 5, 2, 4]"]
    assert rows[("embed",)].outputs == ["f32[2, 5, 8]", "f32[2, 5, 11]"]
    assert rows[("embed",)].params == 11 * 8
    assert rows[()].flops.const == sum(r.flops.const for p, r in rows.items() if len(p) == 1) \
        + 2 * 5 * 8  # the relu of the root module itself


def test_symbolic_dimensions_give_counts_per_size():
    (s,) = summarize(ROOT / "models" / "mlp.py", "mlp_serve")
    assert s.inputs == [("x", "f32[batch, 28, 28, 1]")]
    assert str(s.total.flops) == "218,812*batch"
    (fixed,) = summarize(ROOT / "models" / "mlp.py", "mlp_b8")
    assert fixed.total.flops.const == 8 * 218_812


def test_summary_command_prints_the_table(capsys):
    assert main(["summary", str(ROOT / "models" / "mlp.py"), "--target", "mlp_b8",
                 "-o", str(ROOT / "generated")]) == 0
    out = capsys.readouterr().out
    assert "hidden_0  Dense   f32[8, 128]" in out
    assert "total: 109,386 params (437,544 bytes), 1,750,496 FLOPs" in out
    assert "mlp_serve" not in out


def test_summary_command_errors_are_located_and_exit_1(tmp_path, capsys):
    bad = write_model("""
    class M(nn.Module):
        def apply(self, x):
            return nn.Dense(x.astype(jnp.int32), 3)

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    assert main(["summary", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "error[AOT201]" in err and "no summary" in err
    assert main(["summary", str(ROOT / "models" / "mlp.py"), "--target", "nope"]) == 1
    assert "no target named 'nope' (its targets: mlp_b8, mlp_serve)" in capsys.readouterr().err
    assert main(["summary", str(tmp_path / "missing.py")]) == 1


def test_summary_shows_the_memory_of_compiled_targets(tmp_path):
    model = write_model("""
    class M(nn.Module):
        def apply(self, x):
            return nn.relu(nn.Dense(x, 16))

    aot.target("t", M, x=aot.f32[4, 8])
    """, name="tiny")
    out = tmp_path / "out"
    build = subprocess.run([sys.executable, str(ROOT / "aot_build.py"), str(model), "-o",
                            str(out)], capture_output=True, text=True, timeout=300,
                           cwd=ROOT)
    assert build.returncode == 0, build.stderr
    header = next(line for line in build.stdout.splitlines() if line.startswith("target"))
    assert "FLOPs" in header and "peak mem" in header
    row = next(line for line in build.stdout.splitlines() if line.startswith("t "))
    assert f"{2 * 4 * 8 * 16 + 2 * 4 * 16:,}" in row and " B " in row + " "
    (s,) = summarize(model, output=out)
    (memory,) = s.memory
    assert memory.platform == "cpu"
    assert memory.arguments == (8 * 16 + 16 + 4 * 8) * 4  # params and the input, float32
    assert memory.outputs >= 4 * 16 * 4 and memory.peak >= memory.arguments
    assert s.disk_bytes == sum(p.stat().st_size for p in (out / "artifacts" / "tiny" / "t")
                               .iterdir())
    assert "executable (cpu):" in str(s) and "peak" in str(s)
    # piped, the build printed no progress lines
    assert "\x1b[K" not in build.stderr and "compiling" not in build.stderr


def test_progress_shows_on_a_terminal_only():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term, pipe = Terminal(), io.StringIO()
    for stream in (term, pipe):
        p = Progress(stream, enabled=None)
        p.update("[1/2] compiling net.t")
        p.clear()
    assert "[1/2] compiling net.t" in term.getvalue() and term.getvalue().endswith("\r\x1b[K")
    assert pipe.getvalue() == ""


# ------------------------------------------------------------- the operation table


def test_list_ops_covers_every_registry_entry(capsys):
    assert main(["--list-ops"]) == 0
    out = capsys.readouterr().out
    for key in REGISTRY.entries:
        namespace, _, name = key.rpartition(".")
        spelled = f"x.{name}" if namespace == "array" else key
        assert f"`{spelled}`" in out, key
    assert f"{len(REGISTRY.unique())} operations." in out
    assert "(no rule)" not in out


def test_the_reference_page_is_fresh():
    page = ROOT / "docs" / "operations.md"
    assert page.read_text() == reference(), f"stale {page}: regenerate with `{COMMAND}`"


def test_the_summary_imports_no_jax():
    code = ("import sys; from aotflax.driver import main; "
            "rc = main(['summary', 'models/transformer.py', '--target', 'lm_eval']); "
            "assert rc == 0; assert 'jax' not in sys.modules, 'jax imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "total: 112,384 params" in proc.stdout
