"""Model files are data, never code: canaries that would leave a trace if anything ran them.

Each canary model tries to create the file `CANARY` (an absolute path in the
test's temporary folder) through a different door: `open`, `os`, `subprocess`,
`eval` / `exec` / `__import__`, `getattr` tricks, dunder attributes, default
arguments, class bodies, decorators, f-strings, lambdas, and the one place
where model text does reach generated code (a user initializer, which verify
imports and traces).  The build must reject each with a located error (the
`# E:` annotation) and the canary file must not exist afterwards.  Two more
canaries smuggle code through data (a module name, a hyperparameter string in
a docstring) and must either be rejected or build without running anything.

Also: a failed build leaves an existing output folder byte-identical.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from diag_check import check_output, run_cli

HEADER = "from aotflax import nn, aot\nimport jax\nimport jax.numpy as jnp\n\n\n"

CANARIES: dict[str, str] = {
    "open_in_apply": """
        class Net(nn.Module):
            def apply(self, x):
                open(CANARY, "w").write("ran")  # E: AOT105 'open'
                return x

        aot.target("net", Net, x=aot.f32[2, 8])
    """,
    "import_os": """
        import os

        class Net(nn.Module):
            def apply(self, x):
                os.system("touch " + CANARY)  # E: AOT104 'os.system' cannot be called
                return x

        aot.target("net", Net, x=aot.f32[2, 8])
    """,
    "import_subprocess_in_function": """
        def helper():
            import subprocess
            subprocess.run(["touch", CANARY])  # E: AOT104 'subprocess.run' cannot be called

        class Net(nn.Module):
            def apply(self, x):
                helper()
                return x

        aot.target("net", Net, x=aot.f32[2, 8])
    """,
    "eval_exec_import": """
        class Net(nn.Module):
            def apply(self, x):
                a = eval("open(CANARY, 'w')")  # E: AOT105 'eval'
                b = exec("open(CANARY, 'w')")  # E: AOT105 'exec'
                c = __import__("os").system("touch " + CANARY)  # E: AOT105 '__import__'
                d = compile("1", "f", "eval")  # E: AOT105 'compile'
                return x

        aot.target("net", Net, x=aot.f32[2, 8])
    """,
    "getattr_tricks": """
        class Net(nn.Module):
            def apply(self, x):
                f = getattr(jnp, "load")  # E: AOT346 jnp.load is not supported
                f2 = getattr(x, "__class__")  # E: AOT105 not a dunder
                g = globals()["open"]  # E: AOT105 'globals'
                h = vars(jnp)  # E: AOT105 'vars'
                return x

        aot.target("net", Net, x=aot.f32[2, 8])
    """,
    "dunder_attributes": """
        class Net(nn.Module):
            def apply(self, x):
                classes = ().__class__.__bases__[0].__subclasses__()  # E: AOT105 '__class__'
                b = nn.__dict__  # E: AOT105 '__dict__'
                return x

        aot.target("net", Net, x=aot.f32[2, 8])
    """,
    "dunder_names": """
        class Net(nn.Module):
            def apply(self, x):
                b = __builtins__  # E: AOT105 '__builtins__'
                return x

        aot.target("net", Net, x=aot.f32[2, 8])
    """,
    "default_argument": """
        class Net(nn.Module):
            def apply(self, x, log=open(CANARY, "w")):  # E: AOT105 'open'
                return x

        aot.target("net", Net, x=aot.f32[2, 8])
    """,
    "helper_default_argument": """
        def helper(x, log=input("ran")):  # E: AOT105 'input'
            return x

        class Net(nn.Module):
            def apply(self, x):
                return helper(x)

        aot.target("net", Net, x=aot.f32[2, 8])
    """,
    "lambda_default": """
        class Net(nn.Module):
            def apply(self, x):
                f = (lambda log=open(CANARY, "w"): 0)  # E: AOT105 'open'
                return x

        aot.target("net", Net, x=aot.f32[2, 8])
    """,
    "class_body": """
        class Net(nn.Module):
            log = open(CANARY, "w")  # E: AOT105 'open'

            def apply(self, x):
                return x

        aot.target("net", Net, x=aot.f32[2, 8])
    """,
    "decorators": """
        @open(CANARY, "w")  # E: AOT105 'open'
        def helper(x):
            return x


        class Net(nn.Module):
            def apply(self, x):
                return helper(x)

        aot.target("net", Net, x=aot.f32[2, 8])
    """,
    "class_decorator": """
        @print  # E: AOT102 class decorators
        class Net(nn.Module):
            def apply(self, x):
                return x

        aot.target("net", Net, x=aot.f32[2, 8])
    """,
    "f_string": """
        class Net(nn.Module):
            def apply(self, x):
                return nn.Dense(x, 4, name=f"{open(CANARY, 'w')}")  # E: AOT105 'open'

        aot.target("net", Net, x=aot.f32[2, 8])
    """,
    "comprehension": """
        class Net(nn.Module):
            def apply(self, x):
                logs = [open(CANARY, "w") for _ in range(2)]  # E: AOT105 'open'
                return x

        aot.target("net", Net, x=aot.f32[2, 8])
    """,
    "format_attribute_walk": """
        class Net(nn.Module):
            def apply(self, x):
                s = "{0.__class__.__init__.__globals__}".format(1)  # E: AOT341 attribute
                return x

        aot.target("net", Net, x=aot.f32[2, 8])
    """,
    "jax_internals": """
        class Net(nn.Module):
            def apply(self, x):
                jax.config.update("jax_enable_x64", True)  # E: AOT346 jax.config
                return jnp.load(CANARY)  # E: AOT346 jnp.load

        aot.target("net", Net, x=aot.f32[2, 8])
    """,
    "initializer_body": """
        def my_init(key, shape, dtype):
            open(CANARY, "w").write("ran")  # E: AOT105 'open'
            return jnp.zeros(shape, dtype)


        class Scale(nn.Module):
            def apply(self, x):
                return x * self.param("scale", (x.shape[-1],), my_init)

        aot.target("scale", Scale, x=aot.f32[2, 8])
    """,
    "initializer_annotation": """
        def my_init(key, shape, dtype: open(CANARY, "w")):  # E: AOT103 annotations
            return jnp.zeros(shape, dtype)


        def other_init(key, shape, dtype) -> open(CANARY, "w"):  # E: AOT103 annotations
            return jnp.zeros(shape, dtype)


        class Scale(nn.Module):
            def apply(self, x):
                a = self.param("a", (x.shape[-1],), my_init)
                b = self.param("b", (x.shape[-1],), other_init)
                return x * a * b

        aot.target("scale", Scale, x=aot.f32[2, 8])
    """,
    "initializer_default": """
        def my_init(key, shape, dtype, log=input("ran")):  # E: AOT105 'input'
            return jnp.zeros(shape, dtype)


        class Scale(nn.Module):
            def apply(self, x):
                return x * self.param("scale", (x.shape[-1],), my_init)

        aot.target("scale", Scale, x=aot.f32[2, 8])
    """,
    "initializer_io_and_callbacks": """
        import numpy as np

        SCALE = 0.5


        def my_init(key, shape, dtype):
            np.save(CANARY, np.zeros(3))  # E: AOT346 numpy.save
            y = jax.pure_callback(print, None)  # E: AOT346 jax.pure_callback
            jax.config.update("jax_enable_x64", True)  # E: AOT346 jax.config
            return SCALE * jnp.zeros(shape, dtype)


        class Scale(nn.Module):
            def apply(self, x):
                return x * self.param("scale", (x.shape[-1],), my_init)

        aot.target("scale", Scale, x=aot.f32[2, 8])
    """,
    "initializer_shadowing": """
        def my_init(key, shape, dtype):
            f = lambda open: 0
            open(CANARY, "w")  # E: AOT105 'open'
            return jnp.zeros(shape, dtype)


        class Scale(nn.Module):
            def apply(self, x):
                return x * self.param("scale", (x.shape[-1],), my_init)

        aot.target("scale", Scale, x=aot.f32[2, 8])
    """,
    "module_name_injection": """
        class Net(nn.Module):
            def apply(self, x):
                return nn.Dense(x, 4, name='a"] + open("pwned", "w") + params["b')  # E: AOT310

        aot.target("net", Net, x=aot.f32[2, 8])
    """,
    "param_name_injection": """
        class Net(nn.Module):
            def apply(self, x):
                return self.param('w"]; open("pwned", "w"); ["', (2,), nn.initializers.ones)  # E: AOT310

        aot.target("net", Net, x=aot.f32[2, 8])
    """,
}


def _write(tmp_path: Path, name: str, body: str) -> tuple[Path, Path]:
    import textwrap

    canary = tmp_path / "CANARY"
    text = HEADER + textwrap.dedent(body).strip("\n") + "\n"
    text = text.replace("CANARY", repr(str(canary)))
    folder = tmp_path / "models"
    folder.mkdir()
    path = folder / f"{name}.py"
    path.write_text(text)
    return path, canary


@pytest.mark.parametrize("name", sorted(CANARIES))
def test_canary_rejected_and_never_run(name: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative canaries ("pwned") would land here
    path, canary = _write(tmp_path, name, CANARIES[name])
    out_dir = tmp_path / "out"
    rc, output = run_cli([str(path), "-o", str(out_dir), "--no-compile"])
    check_output(path, rc, output, out_dir)
    assert not canary.exists(), f"{name}: the model file was executed"
    assert not (tmp_path / "pwned").exists(), f"{name}: the model file was executed"


#: Canaries no target reaches: the build skips them with a warning and runs nothing.
SKIPPED: dict[str, str] = {
    "top_level_calls": """
        import os
        import subprocess

        os.system("touch " + CANARY)
        subprocess.run(["touch", CANARY])
        open(CANARY, "w").write("ran")
    """,
    "from_import_star": """
        from os import *

        system("touch " + CANARY)
    """,
    "unused_definitions": """
        @open(CANARY, "w")
        def helper(x, log=open(CANARY, "w")):
            return x

        class Plain(object):
            log = open(CANARY, "w")

        @print
        class Decorated(nn.Module):
            log = open(CANARY, "w")

            def apply(self, x):
                return x
    """,
    "main_block": """
        def main():
            with open(CANARY, "w") as f:
                f.write("ran")

        if __name__ == "__main__":
            main()
    """,
}


@pytest.mark.parametrize("name", sorted(SKIPPED))
def test_unreached_canary_is_skipped_and_never_run(name: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    body = SKIPPED[name] + """
        class Net(nn.Module):
            def apply(self, x):
                return nn.Dense(x, 2)

        aot.target("net", Net, x=aot.f32[2, 8])
    """
    path, canary = _write(tmp_path, name, body)
    out_dir = tmp_path / "out"
    rc, output = run_cli([str(path), "-o", str(out_dir), "--no-compile"])
    assert rc == 0, output
    assert "warning[AOT950]" in output and "not used by any target" in output, output
    assert not canary.exists(), f"{name}: the model file was executed"


def test_code_in_a_docstring_string_stays_data(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A hyperparameter string lands in generated docstrings: escaped, it never runs."""
    monkeypatch.chdir(tmp_path)
    payload = '""" + str(open("pwned", "w")) + """'
    path, canary = _write(tmp_path, "docstring", f"""
        class Net(nn.Module):
            def apply(self, x, tag: str = "a"):
                return nn.Dense(x, 4)

        aot.target("net", Net.partial(tag={payload!r}), x=aot.f32[2, 8])
    """)
    out_dir = tmp_path / "out"
    rc, output = run_cli([str(path), "-o", str(out_dir), "--no-compile"])
    assert rc == 0, output
    assert not (tmp_path / "pwned").exists(), "a hyperparameter string was executed"
    text = (out_dir / "docstring.py").read_text()
    # verify imported the generated module during the build, so the canary proves that
    # importing it ran nothing; the payload is still there, as escaped docstring text
    assert '\\"\\"\\" + str(open("pwned", "w")) + \\"\\"\\"' in text
    compile(text, "docstring.py", "exec")


def test_bad_file_name_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "my-net.py").write_text(HEADER)
    rc, output = run_cli([str(folder), "-o", str(tmp_path / "out"), "--no-compile"])
    assert rc == 1 and "error[AOT107]" in output and "Traceback" not in output, output
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ failed builds


GOOD = """
    class MLP(nn.Module):
        def apply(self, x, hidden: int = 8):
            return nn.Dense(nn.relu(nn.Dense(x, hidden)), 4)

    aot.target("mlp", MLP, x=aot.f32[2, 8])
"""


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("breakage", ["syntax", "resolve", "bytes"])
def test_failed_build_leaves_output_identical(breakage: str, tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    model = folder / "mlp.py"
    import textwrap

    good = HEADER + textwrap.dedent(GOOD)
    model.write_text(good)
    out_dir = tmp_path / "generated"
    rc, output = run_cli([str(folder), "-o", str(out_dir), "--no-compile"])
    assert rc == 0, output
    before = _snapshot(out_dir)
    assert "mlp.py" in before
    if breakage == "syntax":
        model.write_text(good.replace("hidden)), 4)", "hidden), 4)"))
    elif breakage == "resolve":
        model.write_text(good.replace("hidden: int = 8", "hidden: int = 8, extra=undefined"))
    else:
        model.write_bytes(good.encode() + b"# \xff\xfe\n")
    rc, output = run_cli([str(folder), "-o", str(out_dir), "--no-compile"])
    assert rc == 1 and "nothing was written" in output and "Traceback" not in output, output
    assert _snapshot(out_dir) == before
