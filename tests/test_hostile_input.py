"""The build on hostile model files and folders: quoted data, located errors, bounded work.

Every case is written here (nothing is fetched) and built with the real command
line (`aotflax.driver.main`): the models that must fail all in one subprocess
bounded in time and memory (a crash or a hang there cannot take the test run
with it), the others in-process under a time limit.

- strings that try to escape into generated code (docstrings, optax keywords,
  mesh axes, names) are refused or stay data: the generated module's AST holds
  only what the program meant (`generated_ast.problems`), and nothing ran;
- inputs that crashed, hung or exhausted memory (an 8,000-term `and` chain, a
  doubling string, huge ints, `str.replace` growth, a width taken from an
  argument, `round(1, -10**8)`, a comprehension of 10^10 items, ...) and names
  that gave internal errors are located errors, exit status 1, in seconds;
- the models folder: FIFOs, folders named `x.py`, symlinks out of the folder
  or in a loop are refused without being read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from diag_check import run_cli
from fuzzing import time_limit
from generated_ast import MARKER, problems

from aotflax.diagnostics import InternalError
from aotflax.driver import front_end
from aotflax.emit import emit_file

ROOT = Path(__file__).resolve().parent.parent
HEADER = "from aotflax import nn, aot\nimport jax\nimport jax.numpy as jnp\nimport optax\n\n"
#: Runs in generated code only if a string escaped: it leaves a file behind.
RUN = f'__import__("pathlib").Path("{MARKER}").touch()'
#: Seconds a build of one hostile file may take (most take well under one).
LIMIT_S = 30
#: Address space of the subprocess that builds the models which must fail (no jax).
MEMORY = 3 << 30

DENSE = """
class M(nn.Module):
    def apply(self, x):
        return nn.Dense(x, 4)
"""


def write_models(folder: Path, files: dict[str, str]) -> Path:
    models = folder / "models"
    for name, text in files.items():
        path = models / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(HEADER + text)
    models.mkdir(parents=True, exist_ok=True)
    return models


def cli(tmp_path: Path, files: dict[str, str] | None = None) -> tuple[int, str, float]:
    """Build `tmp_path/models` in-process with `tmp_path` as the working directory."""
    write_models(tmp_path, files or {})
    cwd = os.getcwd()
    os.chdir(tmp_path)
    start = time.perf_counter()
    try:
        with time_limit(LIMIT_S):
            rc, output = run_cli(["models", "-o", "out", "--no-compile"])
    finally:
        os.chdir(cwd)
    return rc, output, time.perf_counter() - start


_BATCH = """
import contextlib, io, json, os, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))
from aotflax.driver import main
for folder in sys.argv[1:]:
    os.chdir(folder)
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = main(["models", "-o", "out", "--no-compile"])
    text = out.getvalue()  # a 1,000,000-character line is quoted whole: keep both ends
    text = text if len(text) < 20000 else text[:10000] + " ... " + text[-10000:]
    print(json.dumps([folder, rc, text, time.perf_counter() - start]), flush=True)
"""


def build_in_subprocess(folders: list[Path]) -> dict[str, tuple[int, str, float]]:
    """Build each folder's models with the command line's code, all in one subprocess with
    a bounded address space and a time limit; folder -> (rc, output, seconds).  A folder
    the subprocess did not finish (a crash, a hang) is missing from the result."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    try:
        proc = subprocess.run([sys.executable, "-c", _BATCH.format(memory=MEMORY),
                               *map(str, folders)], env=env, capture_output=True, text=True,
                              timeout=LIMIT_S * 4)
        lines, tail = proc.stdout.splitlines(), f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    except subprocess.TimeoutExpired as e:
        lines, tail = (e.stdout or b"").decode().splitlines(), "timed out"
    results = {}
    for line in lines:
        folder, rc, output, seconds = json.loads(line)
        results[folder] = (rc, output, seconds)
    results["<end>"] = (0, tail, 0.0)
    return results


def assert_refused(tmp_path: Path, rc: int, output: str, code: str, words: str = "") -> None:
    """Exit status 1, the error located (or naming its file), no traceback, nothing written."""
    assert rc == 1, output[-3000:]
    assert "Traceback" not in output and "internal error" not in output, output[-3000:]
    assert f"error[{code}]" in output, output[-3000:]
    assert words in output, output[-3000:]
    first = next(line for line in output.splitlines() if "error[" in line)
    assert first.startswith("models/") or first.startswith(f"error[{code}]: models/"), first
    assert not (tmp_path / "out").exists(), "a failed build wrote files"
    assert not (tmp_path / MARKER).exists(), "a model file ran code"


# ------------------------------------------------------------------ code that must be refused

CHAIN = "X = " + " and ".join(["1"] * 8000) + "\n"

REFUSED = {
    # strings that would have become code
    "optax_keyword_code": (DENSE + f"""
def loss(y):
    return jnp.mean(y)
aot.train_target("t", M, loss=loss, x=aot.f32[2, 3], optimizer=optax.sgd(
    **{{'learning_rate={RUN}, momentum': None}}))
""", "AOT347", "is not an identifier"),
    "mesh_axis_code": (DENSE + f"""
aot.target("t", M, x=aot.f32[2, 3], devices=aot.mesh(**{{'d": {RUN} or 1, "e': 1}}))
""", "AOT347", "is not an identifier"),
    "nul_in_keyword": (DENSE.replace("nn.Dense(x, 4)", "nn.Dense(x, 4, **{'a\\x00b': 1})")
                       + 'aot.target("t", M, x=aot.f32[2, 3])\n', "AOT347", "not an identifier"),
    "symbolic_dimension_code": (DENSE + f"aot.target('t', M, x=aot.f32['b = {RUN}', 3])\n",
                                "AOT410", "ASCII identifier"),
    "full_width_symbolic_dimension": (DENSE + 'aot.target("t", M, x=aot.f32["ｊｎｐ", 3])\n',
                                      "AOT410", "ASCII identifier"),
    # names that gave internal errors
    "collection_jnp": ("""
class M(nn.Module):
    def apply(self, x):
        return x + self.state("v", (3,), collection="jnp").value
aot.target("t", M, x=aot.f32[2, 3])
""", "AOT356", "'jnp' is taken"),
    "collection_keyword": ("""
class M(nn.Module):
    def apply(self, x):
        return x + self.state("v", (3,), collection="class").value
aot.target("t", M, x=aot.f32[2, 3])
""", "AOT356", "keyword"),
    "collection_full_width": ("""
class M(nn.Module):
    def apply(self, x):
        return x + self.state("v", (3,), collection="＿runtime").value
aot.target("t", M, x=aot.f32[2, 3])
""", "AOT356", "not ASCII"),
    "target_full_width_jnp": (DENSE + 'aot.target("ｊｎｐ", M, x=aot.f32[2, 3])\n', "AOT406",
                              "reads it as 'jnp'"),
    "target_full_width_runtime": (DENSE + 'aot.target("＿runtime", M, x=aot.f32[2, 3])\n',
                                  "AOT406", "not ASCII"),
    "target_like_a_helper": (DENSE + 'aot.target("b", M, x=aot.f32[2, 3])\n'
                             'aot.target("_b_init", M, x=aot.f32[2, 3])\n', "AOT406",
                             "call it b_init_target"),
    "target_name_of_a_million": (DENSE + f'aot.target("{"a" * 1_000_000}", M, '
                                 'x=aot.f32[2, 3])\n', "AOT406", "longer than 100"),
    "target_name_code": (DENSE + f"aot.target('t = 1; {RUN}', M, x=aot.f32[2, 3])\n",
                         "AOT406", "not a Python identifier"),
    # libcst's native parser overflowed its stack (exit 139)
    "and_chain_8000": (CHAIN, "AOT100", "nests more than 1,000 levels"),
    "or_chain_100000": ("X = " + " or ".join(["0"] * 100000) + "\n", "AOT100", "1,000 levels"),
    # static values that took gigabytes or minutes
    "string_doubling": ("s = 'ab'\nfor i in range(64):\n    s = s + s\n", "AOT330",
                        "str of 2,097,152 characters"),
    "augmented_doubling": ("s = ['ab']\nfor i in range(64):\n    s += s\n", "AOT330",
                           "list of 2,097,152 items"),
    "int_times_int": ("a = 2 ** 32000\nb = a * a * a\n", "AOT330", "int of 96,001 bits"),
    "int_squaring": ("a = 3\nfor i in range(40):\n    a = a * a\n", "AOT330", "bits"),
    "str_replace_growth": ("s = 'a' * 1000000\ns = s.replace('a', 'aaaaaaaaaa')\n", "AOT330",
                           "10,000,000 characters"),
    "format_width_argument": ('s = "{:{}}".format("", 4500000000)\n', "AOT341",
                              "inside a format spec"),
    "round_huge_digits": ("r = round(1, -10**8)\n", "AOT330", "round(..., -100000000)"),
    "comprehension_of_1e10": ("x = [[0 for i in range(100000)] for j in range(100000)]\n",
                              "AOT330", "build-time steps"),
    "comprehension_of_big_lists": ("x = [[0] * 1000000 for i in range(100000)]\n", "AOT330",
                                   "build-time steps"),
    "sum_of_lists": ("x = sum([[0]] * 100000, [])\n", "AOT330", "build-time steps"),
    "compare_in_a_loop": ("a = [0] * 1000000\nb = [0] * 1000000\nfor i in range(100000):\n"
                          "    c = a == b\n", "AOT330", "would read more than"),
    "repr_of_shared_strings": ("s = 'a' * 100000\nr = repr([s] * 1000)\n", "AOT330",
                               "repr() would read"),
    "fstring_of_shared_strings": ("s = 'a' * 100000\nr = f'{[s] * 1000}'\n", "AOT330",
                                  "formatting this value"),
    "percent_of_shared_strings": ("s = 'a' * 100000\nr = '%s' % ([s] * 1000,)\n", "AOT330",
                                  "formatting these values"),
    "join_of_shared_strings": ("s = 'a' * 100000\nr = ''.join([s] * 1000)\n", "AOT330",
                               "str.join() would build"),
    "extend_doubling": ("a = [0]\nfor i in range(26):\n    a.extend(a)\n", "AOT330",
                        "list.extend() would make a list of 2,097,152 items"),
    "slice_assignment_doubling": ("a = [0]\nfor i in range(26):\n    a[:0] = a\n", "AOT330",
                                  "would make a list of 2,097,152 items"),
    "product_of_huge_ints": ("import math\nx = math.prod([2 ** 30000] * 8)\n", "AOT330",
                             "math.prod()"),
    "emitted_ops_without_end": ("""
class M(nn.Module):
    def apply(self, x):
        for i in range(100):
            for j in range(1000):
                x = x + 1.0
        return x
aot.target("t", M, x=aot.f32[2, 3])
""", "AOT330", "build-time steps"),
}


def test_hostile_models_are_located_errors(tmp_path: Path) -> None:
    folders = {name: tmp_path / name for name in sorted(REFUSED)}
    for name, folder in folders.items():
        write_models(folder, {"m.py": REFUSED[name][0]})
    results = build_in_subprocess(list(folders.values()))
    failures = []
    for name, folder in folders.items():
        _, code, words = REFUSED[name]
        if str(folder) not in results:
            failures.append(f"{name}: the build crashed or hung ({results['<end>'][1]})")
            break
        rc, output, seconds = results[str(folder)]
        try:
            assert_refused(folder, rc, output, code, words)
            assert seconds < LIMIT_S, f"took {seconds:.1f} s"
        except AssertionError as e:
            failures.append(f"{name}: {e}")
    assert not failures, "\n\n".join(failures)


# ------------------------------------------------------------------ strings that stay data

PAYLOADS = [f'"""; {RUN}; """', f"'''; {RUN}; '''", f'" + {RUN} + "', f"\\\"; {RUN} #",
            f"x\n{RUN}\n", f"\\N{{BULLET}}{MARKER}\\"]

BUILDS = {
    # hyperparameter strings reach docstrings of the module, target and loss functions
    "hyperparameters_in_docstrings": "".join(f"""
class M{i}(nn.Module):
    def apply(self, x, s="a"):
        return nn.Dense(x, 4)
def loss{i}(y, label={p!r}):
    return jnp.mean(y)
aot.train_target("t{i}", M{i}.partial(s={p!r}), loss=loss{i}, optimizer=optax.sgd(0.1),
                 x=aot.f32[2, 3])
""" for i, p in enumerate(PAYLOADS)),
    # names that shadowed what generated code reads: renamed, never rebound
    "names_generated_code_uses": """
class ｊａｘ(nn.Module):
    def apply(self, x):
        return nn.Dense(x, 4)
class _runtime(nn.Module):
    def apply(self, params, jnp, TARGETS, outputs):
        return ｊａｘ(params + jnp + TARGETS + outputs)
def loss(y, grad_fn):
    return y.mean() + grad_fn.mean()
aot.train_target("t", _runtime, loss=loss, optimizer=optax.sgd(0.1), params=aot.f32[2, 3],
                 jnp=aot.f32[2, 3], TARGETS=aot.f32[2, 3], outputs=aot.f32[2, 3],
                 grad_fn=aot.f32[2, 4])
""",
    "state_written_inf": """
class M(nn.Module):
    def apply(self, x):
        v = self.state("v", (3,))
        v.value = float("inf")
        w = self.state("w", (3,), collection="cache")
        w.value = float("nan")
        return x
aot.target("t", M, x=aot.f32[2, 3])
""",
}


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_hostile_strings_stay_data(name: str, tmp_path: Path) -> None:
    rc, output, _ = cli(tmp_path, {"m.py": BUILDS[name]})
    assert rc == 0, output[-3000:]
    # verify imported the generated module during the build: had a string escaped, it ran
    assert not (tmp_path / MARKER).exists(), "a hyperparameter string was executed"
    text = (tmp_path / "out" / "m.py").read_text()
    assert problems(text, set(PAYLOADS)) == []


def test_state_inf_is_written_as_a_float_call(tmp_path: Path) -> None:
    rc, output, _ = cli(tmp_path, {"m.py": BUILDS["state_written_inf"]})
    text = (tmp_path / "out" / "m.py").read_text()
    assert rc == 0 and 'jnp.full((3,), float("inf"), jnp.float32)' in text, output
    assert 'float("nan")' in text


def _program(tmp_path: Path, source: str):
    path = tmp_path / "prog.py"
    path.write_text(HEADER + textwrap.dedent(source))
    report = front_end([path], tmp_path)
    assert not report.diagnostics, [d.render() for d in report.diagnostics]
    return report.files[0].program


#: A program with every kind of slot emit fills: training with parameter groups, a mesh
#: with sharding rules, state, several targets sharing an init.
EVERY_SLOT = """
class Net(nn.Module):
    def apply(self, x, label="a"):
        v = self.state("count", (4,))
        v.value = v.value + 1.0
        return nn.Dense(nn.relu(nn.Dense(x, 4)), 4)

def loss(y, labels):
    return jnp.mean((y - labels) ** 2)

aot.train_target("train", Net, loss=loss, x=aot.f32[2, 4], labels=aot.f32[2, 4],
                 optimizer=aot.MultiOptimizer(
                     (aot.ModelParamTraversal(lambda path, p: "bias" in path), optax.sgd(0.1))))
aot.target("sharded", Net, x=aot.f32[2, 4], devices=aot.mesh(data=1, model=1),
           param_sharding=[("*/kernel", (None, "model"))])
aot.target("again", Net, x=aot.f32[2, 4])
"""


def _hostile(program, payload: str):
    """`program` with the user text of every slot emit fills as data replaced by `payload`."""
    def decl(d):
        return dataclasses.replace(d, path=tuple(f"{p}{payload}" for p in d.path))

    def target(t):
        train = t.train and dataclasses.replace(
            t.train, labels=tuple((tuple(f"{p}{payload}" for p in path), f"{label}{payload}")
                                  for path, label in t.train.labels))
        return dataclasses.replace(
            t, description=payload, platforms=(payload,), params=tuple(map(decl, t.params)),
            state=tuple(map(decl, t.state)), train=train,
            mesh=tuple((f"{n}{payload}", k) for n, k in t.mesh),
            param_sharding=tuple((tuple(f"{p}{payload}" for p in path),
                                  tuple(a and f"{a}{payload}" for a in spec))
                                 for path, spec in t.param_sharding),
            symbolic=((t.inputs[0][0], (payload, 4)),))

    functions = tuple(dataclasses.replace(f, doc=payload) for f in program.functions)
    return dataclasses.replace(program, relpath=payload, source_sha256=payload,
                               functions=functions, targets=tuple(map(target, program.targets)))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_every_data_slot_is_quoted(payload: str, tmp_path: Path) -> None:
    program = _hostile(_program(tmp_path, EVERY_SLOT), payload)
    text = emit_file(program, "prog")
    found = problems(text, {payload} | {f"{s}{payload}" for s in (
        "Dense_0", "Dense_1", "kernel", "bias", "count", "state", "group_0", "frozen", "data",
        "model")})
    assert found == [], found


@pytest.mark.parametrize("field", ["function", "target", "collection", "input_dtype"])
def test_a_bad_name_never_reaches_generated_code(field: str, tmp_path: Path) -> None:
    """Names are checked where the model declares them; emit refuses any that slipped by."""
    program = _program(tmp_path, EVERY_SLOT)
    bad = f'x = 1; {RUN}'
    fn = program.functions[0]
    t = program.targets[-1]
    if field == "function":
        program = dataclasses.replace(program, functions=(dataclasses.replace(fn, name=bad),
                                                          *program.functions[1:]))
    elif field == "collection":
        program = dataclasses.replace(program, functions=(dataclasses.replace(
            fn, state_collections=(bad,)), *program.functions[1:]))
    else:
        changed = dataclasses.replace(t, name=bad) if field == "target" else \
            dataclasses.replace(t, inputs=tuple((n, s, bad) for n, s, _ in t.inputs))
        program = dataclasses.replace(program, targets=(*program.targets[:-1], changed))
    with pytest.raises(InternalError, match="emit: "):
        emit_file(program, "prog")


# ------------------------------------------------------------------ the models folder

GOOD = DENSE + 'aot.target("t", M, x=aot.f32[2, 3])\n'


def test_fifo_is_refused_not_read(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    os.mkfifo(tmp_path / "models" / "pipe.py")  # reading it would wait for a writer forever
    rc, output, seconds = cli(tmp_path, {"good.py": GOOD})
    assert_refused(tmp_path, rc, output, "AOT108", "models/pipe.py: is a FIFO")
    assert seconds < LIMIT_S / 2


def test_symlink_out_of_the_folder_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:SECRET-CONTENT\n")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "passwd.py").symlink_to(secret)
    rc, output, _ = cli(tmp_path, {"good.py": GOOD})
    assert_refused(tmp_path, rc, output, "AOT108", "outside the folder being built")
    assert "SECRET-CONTENT" not in output


def test_symlink_inside_the_folder_is_read(tmp_path: Path) -> None:
    (tmp_path / "models" / "sub").mkdir(parents=True)
    (tmp_path / "models" / "sub" / "real.py").write_text(HEADER + GOOD)
    (tmp_path / "models" / "alias.py").symlink_to(tmp_path / "models" / "sub" / "real.py")
    rc, output, _ = cli(tmp_path)
    assert rc == 0 and (tmp_path / "out" / "alias.py").is_file(), output


def test_folder_named_like_a_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "models" / "x.py").mkdir(parents=True)
    rc, output, _ = cli(tmp_path, {"good.py": GOOD})
    assert_refused(tmp_path, rc, output, "AOT108", "models/x.py: is a folder")


def test_dotted_file_name_is_refused(tmp_path: Path) -> None:
    rc, output, _ = cli(tmp_path, {"a.b.py": GOOD})
    assert_refused(tmp_path, rc, output, "AOT107", "'a.b' is not a valid Python module name")


@pytest.mark.parametrize("kind", ["loop", "dangling"])
def test_broken_symlinks_are_refused(kind: str, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    if kind == "loop":
        (models / "a.py").symlink_to(models / "b.py")
        (models / "b.py").symlink_to(models / "a.py")
        words = "symbolic link loop"
    else:
        (models / "a.py").symlink_to(tmp_path / "missing.py")
        words = "cannot be opened"
    rc, output, _ = cli(tmp_path, {"good.py": GOOD})
    assert_refused(tmp_path, rc, output, "AOT108", words)
