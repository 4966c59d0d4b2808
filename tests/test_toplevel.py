"""Model files as their authors write them: on-demand top level and imports between files.

Module-level names are computed when a target reaches them (in source order, with
in-place updates such as `config.update(...)`); model files import each other as
Python would with the build folder on the path; every import spelling of the
aotflax package reaches the same DSL.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from diag_check import run_cli
from helpers import build, build_errors

from aotflax.artifacts import render_runtime
from aotflax.driver import front_end
from aotflax.verify import import_generated, verify_module


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


def _build_tree(root: Path, models: list[str]) -> dict:
    """Build files of a folder through the front end and verify; module name -> module."""
    paths = [root / m for m in models]
    report = front_end(paths, root)
    assert not report.diagnostics, "\n".join(d.render() for d in report.diagnostics)
    texts = {f.out_rel: f.text for f in report.files}
    _, importer = import_generated(texts, render_runtime())
    out = {}
    for f in report.files:
        module = importer(f.module)
        verify_module(module, f.program)
        module.__aotflax_text__ = f.text
        out[f.module] = module
    return out


LAYERS = """
    from aotflax import nn
    import jax.numpy as jnp

    WIDTH = 6


    def scale(x, s=2.0):
        return x * s


    class Block(nn.Module):
        def apply(self, x, features: int = WIDTH):
            return nn.relu(nn.Dense(x, features))
"""

NET = """
    from aotflax import nn, aot
    from models import layers
    from . import layers as same_layers
    import models.layers
    from models.layers import Block, scale


    class Net(nn.Module):
        def apply(self, x):
            x = Block(x)
            x = layers.Block(x, 4)
            x = models.layers.scale(x)
            return same_layers.scale(scale(x), 0.25)


    aot.target("net", Net, x=aot.f32[2, 3])
"""

TARGETS = """
    from aotflax import aot
    from models import net

    aot.target("net_again", net.Net, x=aot.f32[2, 3])
"""


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("src") / "models"
    _write_tree(root, {"layers.py": LAYERS, "net.py": NET, "targets.py": TARGETS})
    return _build_tree(root, ["layers.py", "net.py", "targets.py"])


def test_imports_between_model_files_compute_the_model(tree: dict) -> None:
    net = tree["net"].net
    params, state = net.init(jax.random.key(0))
    assert params["Block_0"]["Dense_0"]["kernel"].shape == (3, 6)  # WIDTH from layers.py
    assert params["Block_1"]["Dense_0"]["kernel"].shape == (6, 4)
    x = jax.random.normal(jax.random.key(1), (2, 3))
    y, _ = net.apply(params, state, x)
    b0, b1 = params["Block_0"]["Dense_0"], params["Block_1"]["Dense_0"]
    h = jax.nn.relu(x @ b0["kernel"] + b0["bias"][None])
    h = jax.nn.relu(h @ b1["kernel"] + b1["bias"][None])
    np.testing.assert_allclose(y, h * 2.0 * 2.0 * 0.25, rtol=1e-6)


def test_a_targets_file_declares_targets_for_another_files_model(tree: dict) -> None:
    net, again = tree["net"].net, tree["targets"].net_again
    params, state = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(2), (2, 3))
    np.testing.assert_array_equal(net.apply(params, state, x)[0],
                                  again.apply(params, state, x)[0])
    assert tree["layers"].TARGETS == {}


def test_generated_comments_point_into_the_file_each_line_is_in(tree: dict) -> None:
    text = tree["targets"].__aotflax_text__
    assert "# models/layers.py:13" in text  # Block's Dense line
    assert "# models/net.py:11" in text  # Net's first line
    assert "from models/layers.py:12" in text  # Block's docstring


def test_relative_import_cannot_leave_the_build_folder(tmp_path: Path) -> None:
    root = tmp_path / "models"
    _write_tree(tmp_path, {"secret.py": "X = 1\n"})
    _write_tree(root, {"net.py": """
        from aotflax import nn, aot
        from .. import secret

        class Net(nn.Module):
            def apply(self, x):
                return x * secret.X

        aot.target("net", Net, x=aot.f32[2, 3])
    """})
    report = front_end([root / "net.py"], root)
    assert [d.code for d in report.diagnostics] == ["AOT104"]
    assert "leaves the build folder" in report.diagnostics[0].message


def test_a_file_of_the_build_that_fails_reports_its_own_errors(tmp_path: Path) -> None:
    root = tmp_path / "models"
    _write_tree(root, {"bad.py": "def f(:\n", "net.py": """
        from aotflax import nn, aot
        from models import bad

        class Net(nn.Module):
            def apply(self, x):
                return bad.f(x)

        aot.target("net", Net, x=aot.f32[2, 3])
    """})
    rc, output = run_cli([str(root), "-o", str(tmp_path / "out"), "--no-compile"])
    assert rc == 1 and "bad.py:1" in output and "syntax error" in output, output
    assert "Traceback" not in output and not (tmp_path / "out").exists()


def test_a_folder_named_relative_to_the_working_directory_imports_files_not_yet_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `aot_build.py models` from the project root: `net.py` sorts before the file it
    # imports, so the import reads it first (the workspace finds it by its real path)
    root = tmp_path / "models"
    _write_tree(root, {"net.py": """
        from aotflax import nn, aot
        from models.pkg import z_layers

        class Net(nn.Module):
            def apply(self, x):
                return z_layers.double(x)

        aot.target("net", Net, x=aot.f32[2, 3])
    """, "pkg/z_layers.py": """
        def double(x):
            return x * 2.0
    """})
    monkeypatch.chdir(tmp_path)
    rc, output = run_cli(["models", "-o", "out", "--no-compile"])
    assert rc == 0, output
    assert "internal error" not in output
    assert (tmp_path / "out" / "net.py").is_file()


# ------------------------------------------------------------------ on demand


def test_module_level_names_are_computed_in_order_when_a_target_needs_them() -> None:
    m = build("""
    CONFIG = dict(width=4, depth=1)
    CONFIG.update(width=5)
    W = 2
    W = W * 3


    class Net(nn.Module):
        def apply(self, x, width: int = 1, depth: int = 1):
            for _ in range(depth):
                x = nn.Dense(x, width)
            return nn.Dense(x, W)


    aot.target("net", Net.partial(**CONFIG), x=aot.f32[2, 3])
    """)
    shapes = m.net.PARAM_SHAPES
    assert shapes["Dense_0"]["kernel"].shape == (3, 5)
    assert shapes["Dense_1"]["kernel"].shape == (5, 6)


def test_a_circular_definition_is_located() -> None:
    out = build_errors("""
    A = B
    B = A


    class Net(nn.Module):
        def apply(self, x):
            return x * A

    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    assert "error[AOT340]" in out and "circular" in out, out


@pytest.mark.parametrize("header", [
    "import aotflax as flax\nfrom aotflax import aot\nnn = flax.nn\n",
    "import aotflax.nn as nn\nfrom aotflax import aot\n",
    "from aotflax import nn\nimport aotflax.aot as aot\n",
])
def test_every_import_spelling_of_aotflax_reaches_the_dsl(header: str) -> None:
    m = build(header + textwrap.dedent("""
    from typing import Any, Callable, Optional


    class Net(nn.Module):
        def apply(self, x: Any, features: int = 3, act: Optional[Callable] = None):
            return nn.Dense(x, features)


    aot.target("net", Net, x=aot.f32[2, 3])
    """), header=False)
    assert m.net.PARAM_SHAPES["Dense_0"]["kernel"].shape == (3, 3)


def test_flax_nn_attribute_paths() -> None:
    m = build("""
    import aotflax as flax


    class Net(flax.nn.Module):
        def apply(self, x):
            return flax.nn.relu(flax.nn.Dense(x, 3, kernel_init=flax.nn.initializers.ones))


    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    params, state = m.net.init(jax.random.key(0))
    y, _ = m.net.apply(params, state, jnp.ones((2, 3)))
    np.testing.assert_array_equal(y, jnp.full((2, 3), 3.0))


def test_flax_deprecated_nn_is_flax_nn() -> None:
    """Flax 0.3 to 0.4 kept flax.nn as flax.deprecated.nn (init2winit, gift and other
    google-research code import it so): each spelling of it reaches the same layers."""
    m = build("""
    import aotflax as flax
    from aotflax.deprecated import nn as dnn
    import aotflax.deprecated.nn as nn2


    class Net(dnn.Module):
        def apply(self, x, act=flax.deprecated.nn.relu):
            return act(nn2.Dense(x, 3, kernel_init=flax.deprecated.nn.initializers.ones))


    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    params, state = m.net.init(jax.random.key(0))
    y, _ = m.net.apply(params, state, -jnp.ones((2, 3)))
    np.testing.assert_array_equal(y, jnp.zeros((2, 3)))


def test_targets_declared_in_a_top_level_loop() -> None:
    m = build("""
    class Net(nn.Module):
        def apply(self, x, width: int = 2):
            return nn.Dense(x, width)


    for width in (2, 3):
        aot.target(f"net_{width}", Net.partial(width=width), x=aot.f32[2, 4])
    """)
    assert sorted(m.TARGETS) == ["net_2", "net_3"]
    assert m.net_3.PARAM_SHAPES["Dense_0"]["kernel"].shape == (4, 3)
