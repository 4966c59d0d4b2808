"""The diagnostic catalogue: every error code aotflax reports, explained with an example.

`aotflax --explain AOT311` prints an entry, like rustc's `--explain` or the
error pages of Flax's `flax/errors.py`.  Codes are stable: a code keeps its
meaning forever, a retired code is never reused.  They are grouped by stage:

- AOT1xx: reading and parsing the model file (syntax, encoding, what a model
  file may contain at all);
- AOT2xx: arrays handed to operations (dtypes, ranks, shapes, static arguments);
- AOT3xx: the static evaluator (calls, names, modules, control flow);
- AOT4xx: target declarations (AOT44x: the hardware a target names; AOT45x:
  cross-compiling for it).

Each entry's `wrong` example is a model (after the usual imports) that fails
with that code and `fixed` is the same model corrected; `tests/test_errors.py`
builds both, so the catalogue cannot drift from the compiler.
"""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass

__all__ = ["Entry", "CODES", "explain", "EXAMPLE_HEADER"]

#: Imports every example assumes (prepended when the examples are checked).
EXAMPLE_HEADER = "from aotflax import nn, aot\nimport jax\nimport jax.numpy as jnp\n\n"


@dataclass(frozen=True)
class Entry:
    """One diagnostic code."""

    code: str
    #: Short title (what went wrong, in a few words).
    title: str
    #: Why it is an error and what to do, in a paragraph or two.
    explanation: str
    #: A small model that fails with this code.
    wrong: str
    #: The same model, fixed.
    fixed: str
    #: False where the example cannot be a checked model file (encodings, file names).
    checked: bool = True

    def render(self) -> str:
        out = [f"{self.code}: {self.title}", "", _para(self.explanation), "",
               "Example (wrong):", "", _indent(self.wrong), "", "Fix:", "", _indent(self.fixed)]
        return "\n".join(out).rstrip() + "\n"


def _para(text: str) -> str:
    return "\n\n".join(textwrap.fill(" ".join(p.split()), 79)
                       for p in textwrap.dedent(text).strip().split("\n\n"))


def _indent(code: str) -> str:
    return textwrap.indent(textwrap.dedent(code).strip("\n"), "    ")


_ENTRIES: list[Entry] = []


def _entry(code: str, title: str, explanation: str, wrong: str, fixed: str,
           checked: bool = True) -> None:
    _ENTRIES.append(Entry(code, title, explanation, textwrap.dedent(wrong).strip("\n") + "\n",
                          textwrap.dedent(fixed).strip("\n") + "\n", checked))


# ====================================================================== AOT1xx: the file

_entry("AOT100", "syntax error", """
    The model file is not valid Python (for the Python running the build), or
    nests one expression deeper than its parser handles (a sum of hundreds of
    terms: split it into several statements).  The location is Python's own: an
    unclosed bracket is reported where it opens, not at the end of the file.
    Nothing of the file is resolved until it parses.
    """, """
    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4
    """, """
    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4)
    """)

_entry("AOT950", "statement not used by any target (a warning)", """
    The build interprets only what the declared targets reach.  Every other
    top-level statement (a training loop, flag definitions, `if __name__ ==
    "__main__":`, a plain Python class, an import of another library) is skipped
    and never executed; the build says so once per statement (or, for more than three
    in one file, once for the file, naming them), so that nothing is
    skipped silently.  Nothing needs fixing: move such code to another file if the
    warnings are noise.
    """, """
    import os

    os.makedirs("/tmp/out", exist_ok=True)

    class Net(nn.Module):
        def apply(self, x):
            return x

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return x

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT951", "gin registration: bindings not applied (a warning)", """
    A function or class decorated `@gin.configurable` (or `@gin.register`, or
    wrapped by `gin.external_configurable`) is the function or class itself in the
    build.  Gin bindings live in config files that the program running the model
    parses; the build never reads them, so the definition takes the arguments its
    caller passes and the defaults it declares, not what a config binds.  Pass the
    values of your gin config as arguments (the target's `Model.partial(...)`); the
    decorator may stay.  `gin.REQUIRED` defaults must be passed.
    """, """
    import gin

    @gin.configurable
    class Net(nn.Module):
        def apply(self, x, features=4):
            return nn.Dense(x, features)

    aot.target("net", Net.partial(features=8), x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x, features=4):
            return nn.Dense(x, features)

    aot.target("net", Net.partial(features=8), x=aot.f32[2, 8])
    """)

_entry("AOT101", "model file is not valid UTF-8", """
    Model files are read as UTF-8 text.  The byte shown could not be decoded; the
    file was probably saved in another encoding (Latin-1, UTF-16).  Save it as
    UTF-8.
    """, """
    # saved as Latin-1: the byte 0xe9 below is not UTF-8
    x = nn.Dense(x, 4, name="caf\\xe9")
    """, """
    # saved as UTF-8
    x = nn.Dense(x, 4, name="cafe")
    """, checked=False)

_entry("AOT102", "statement not supported in model files", """
    The DSL is a static subset of Python: loops are unrolled and branches pruned
    at build time (a `while` inside a function runs while its static condition
    holds), so `try`, `with`, `global`, `del`, a `while` at the top level of a file,
    nested classes and statements other than methods and assignments in a module
    class have no meaning there (class attributes, `FEATURES = 64`, are read as
    `self.FEATURES`).  Use `for` over a static range, `if` on static values, and
    module-level constants.
    """, """
    class Net(nn.Module):
        def apply(self, x, depth: int = 2):
            try:
                for _ in range(depth):
                    x = nn.relu(nn.Dense(x, 8))
            except ValueError:
                pass
            return x

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x, depth: int = 2):
            for _ in range(depth):
                x = nn.relu(nn.Dense(x, 8))
            return x

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT103", "expression not supported in model files", """
    This expression form (set displays, `:=`, `await`, `yield`, bytes literals,
    starred subscripts, calls in annotations...) is outside the DSL's static
    evaluator.  Rewrite it with tuples, lists, dicts and plain assignments.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            axes = {0, 1}
            return jnp.mean(x, axis=tuple(axes))

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            axes = (0, 1)
            return jnp.mean(x, axis=axes)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT104", "a target uses a module aotflax does not interpret", """
    A model file is data, not a program.  It may import anything (a training
    script imports absl, tensorflow_datasets, flax.optim...): what no target
    reaches is skipped with a warning.  But code a target reaches may use only
    the DSL's vocabulary (`aotflax`, `jax`, `jax.numpy`, `jax.lax`, `jax.nn`,
    `jax.random`, `numpy`, `math`, `functools`, `operator`, `string`, `typing`, `dataclasses`,
    `collections`, `ml_collections`, `optax`) and the build's own model files (`from models import utils`, `from . import layers`).  The
    build never imports or runs the file, so anything else could not mean
    anything.
    """, """
    import os

    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, int(os.environ["WIDTH"]))

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x, width: int = 16):
            return nn.Dense(x, width)

    aot.target("net", Net.partial(width=16), x=aot.f32[2, 8])
    """)

_entry("AOT105", "Python internals are not available", """
    `open`, `eval`, `exec`, `__import__`, `globals`, `vars`, `input` and
    dunder attributes such as `().__class__` are Python machinery, not part of
    the DSL: a model file describes a network and is never executed.  The
    static evaluator rejects them wherever they appear (including default
    arguments, decorators and f-strings).  (`print(...)` and `logging.info(...)`
    are dropped: under JAX they ran once while tracing, never in the program;
    `getattr(obj, "name")` is `obj.name` and `setattr(obj, "name", v)` is `obj.name = v`,
    for a static name that is no dunder; `locals()` is the function's own names.)
    """, """
    class Net(nn.Module):
        def apply(self, x, width=eval("4 * 4")):
            return nn.Dense(x, width)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x, width=4 * 4):
            return nn.Dense(x, width)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT106", "(retired) an initializer uses something the generated code lacks", """
    No longer reported.  Initializers of the model file used to be copied into the
    generated module and checked against a list of names; since aotflax 0.2 they
    are interpreted like any model code, so they reach only the operation table,
    static values and their own arguments, and a mistake in one gets the same
    located error as anywhere else.  The code stays reserved.
    """, """
    def scaled_normal(key, shape, dtype):
        return jax.random.normal(key, shape, dtype) * 0.1
    """, """
    def scaled_normal(key, shape, dtype):
        return jax.random.normal(key, shape, dtype) * 0.1
    """, checked=False)

_entry("AOT107", "model file name is not a Python module name", """
    `models/foo.py` becomes the module `generated.foo`, so every part of a model
    file's path below the built folder must be a Python identifier (no dashes,
    no leading digits, no keywords).  Rename the file or folder.
    """, """
    models/my-net.py
    """, """
    models/my_net.py
    """, checked=False)

_entry("AOT108", "not a model file", """
    The build reads only regular files inside the folder it builds, of at most 8
    MiB.  A `*.py` entry that is a folder, a FIFO or a device, a symbolic link
    loop, or a symbolic link to a file outside that folder is refused without
    being read (a link could otherwise make the build read, and quote in its
    messages, any file the user can read).  Copy the file into the folder.
    """, """
    models/net.py -> /home/me/other/net.py   (a symbolic link out of models/)
    """, """
    models/net.py                            (a copy of the file)
    """, checked=False)

# ====================================================================== AOT2xx: arrays

_entry("AOT201", "array argument of the wrong dtype or rank", """
    An operation received an array it cannot take: an integer array where a
    floating one is needed (Dense, Conv, LayerNorm), float indices for Embed, or
    an array of the wrong rank (Conv with a 2-D window needs rank-4 inputs).  The
    message shows the array's dtype and shape as resolved at build time.
    """, """
    class Net(nn.Module):
        def apply(self, tokens):
            return nn.Dense(tokens, 4)

    aot.target("net", Net, tokens=aot.i32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, tokens):
            return nn.Dense(tokens.astype(jnp.float32), 4)

    aot.target("net", Net, tokens=aot.i32[2, 8])
    """)

_entry("AOT202", "an array was expected", """
    This argument must be an array (a model input or a value computed from one),
    but it is a static value such as a number, a tuple or None, or a list with no
    arrays in it.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return jnp.concatenate([], axis=-1)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return jnp.concatenate([x, x], axis=-1)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT203", "invalid static argument", """
    Hyperparameters (feature counts, kernel sizes, strides, axes, padding, flags,
    dtypes, initializers) are build-time values.  This one has the wrong type or
    value: a tuple of the wrong length, a negative size, an unknown padding mode,
    an initializer factory that was not called, or an array where a static value
    is needed.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Conv(x, 8, (3, 3), strides=(1, 1, 1))

    aot.target("net", Net, x=aot.f32[2, 8, 8, 1])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Conv(x, 8, (3, 3), strides=(1, 1))

    aot.target("net", Net, x=aot.f32[2, 8, 8, 1])
    """)

_entry("AOT206", "a random key passed where none is taken", """
    Random keys come from `nn.make_rng()` and may only be passed to `jax.random`
    functions or to stochastic layers (`nn.dropout(..., rng=key)`).  Feeding a
    key to an ordinary operation is almost always a mistake.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            key = nn.make_rng()
            return x + jnp.asarray(key)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            key = nn.make_rng()
            return x + jax.random.normal(key, x.shape)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT210", "shapes do not fit", """
    The shapes of the arrays do not fit the operation: they do not broadcast
    (`x + y`), the contracting dimensions of a matmul differ, a reshape changes
    the size, a window is larger than its padded input...  The message names the
    operation and both shapes, as JAX would at trace time; aotflax finds it at
    build time.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            h = nn.Dense(x, 16)
            return h + x

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            h = nn.Dense(x, 8)
            return h + x

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT211", "invalid array index", """
    Arrays are indexed with static ints, slices, `None`, `...` or integer arrays.
    Boolean masks give data-dependent shapes, which cannot be compiled ahead of
    time; use `jnp.where` instead.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return x[x > 0]

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return jnp.where(x > 0, x, 0.0)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT215", "a user initializer fails or returns the wrong array", """
    A user initializer `def init(key, shape, dtype)` is copied into the generated
    module and traced (never run on data) when the build checks `init`.  It
    raised an error there, or returned an array whose shape or dtype differs from
    the parameter it initializes.  The location is the line of the model file
    that failed.
    """, """
    def scaled_normal(key, shape, dtype, scale=(0.1,)):
        return scale * jax.random.normal(key, shape, dtype)

    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4, kernel_init=scaled_normal)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    def scaled_normal(key, shape, dtype, scale=0.1):
        return scale * jax.random.normal(key, shape, dtype)

    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4, kernel_init=scaled_normal)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, checked=False)

_entry("AOT220", "numpy cannot do this", """
    numpy in model code runs on the host: the generated code makes the same numpy
    calls when JAX traces it, so a numpy array (a position table, a mask) is a
    constant of the compiled program, computed exactly as numpy computes it.
    numpy cannot take an array of the computation (an input, a parameter, a
    layer's output: under `jax.jit` numpy would fail on it too), has no bfloat16,
    and a numpy array larger than 16,777,216 elements is refused (it would be
    embedded in the program).  Use the jnp function of the same name for arrays
    of the computation, or convert the table with `jnp.asarray` first.
    """, """
    import numpy as np

    class Net(nn.Module):
        def apply(self, x):
            return np.tanh(x)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    import numpy as np

    class Net(nn.Module):
        def apply(self, x):
            return jnp.tanh(x) * np.sqrt(2.0)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

# ====================================================================== AOT3xx: evaluator

_entry("AOT300", "the model raised an error at build time", """
    A `raise` or a failing `assert` was reached while resolving the model with
    the hyperparameters and input shapes of a target.  Model authors use them to
    validate hyperparameters; the message is theirs.
    """, """
    class Net(nn.Module):
        def apply(self, x, depth: int = 0):
            if depth < 1:
                raise ValueError(f"depth must be positive, got {depth}")
            return nn.Dense(x, 4)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x, depth: int = 0):
            if depth < 1:
                raise ValueError(f"depth must be positive, got {depth}")
            return nn.Dense(x, 4)

    aot.target("net", Net.partial(depth=2), x=aot.f32[2, 8])
    """)

_entry("AOT301", "too many positional arguments", """
    The call passes more positional arguments than the function, layer or
    module takes.  The hint shows its signature; pass hyperparameters by keyword
    to make calls readable.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4, True, None, jnp.float32, None, 1, 2, 3)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4, bias=True)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT302", "unexpected keyword argument", """
    The function, layer or module has no parameter of that name.  Built-in
    layers keep the old `flax.nn` signatures (`bias=`, not Linen's `use_bias=`);
    the hint lists the accepted names.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4, use_bias=False)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4, bias=False)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT303", "argument given twice", """
    The same parameter received a value both positionally and by keyword (or
    from `partial` and again at the call with a conflicting form).
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4, features=8)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, features=8)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT304", "missing required argument", """
    A parameter without a default received no value.  For a target, every input
    of `apply` needs a spec and every hyperparameter without a default must be
    bound with `Module.partial(...)`.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT305", "value cannot appear in generated code", """
    The generated module is plain JAX source, so every static value an
    operation passes on must be writable as Python code: numbers, strings,
    tuples, dtypes, initializers, activation functions.  Modules, namespaces and
    user functions (other than initializers) cannot be passed as arguments to
    array operations.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return jnp.reshape(x, nn.Dense)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return jnp.reshape(x, (16,))

    aot.target("net", Net, x=aot.f32[2, 8])
    """, checked=False)

_entry("AOT310", "invalid module name", """
    `name=` must be a non-empty string of letters, digits, '_', '-' and '.'
    (names become keys of the parameter dict).  Functions without parameters
    (`nn.relu`) take no name, and a shared module is named where `.shared(...)`
    creates it, not at each call.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4, name="head/out")

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4, name="head_out")

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT311", "a submodule name is used twice", """
    Two layers in one module got the same explicit `name=` (or a parameter name
    collides with a submodule, or an automatic name such as `Dense_0` is one that
    an earlier `name=` took: as in Linen, explicit names do not move the
    per-class counter and an automatic name is never skipped).  In Flax each
    name is one set of parameters, so calling a layer twice under one name is ambiguous: did you mean one layer
    applied twice (use `shared`), or two layers (use two names)?  To apply one
    layer several times with the same parameters, create it once with
    `nn.Dense.shared(features=..., name="fc")` and call the result.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            x = nn.Dense(x, 8, name="fc")
            return nn.Dense(x, 8, name="fc")

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            fc = nn.Dense.shared(features=8, name="fc")
            return fc(fc(x))

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT312", "a shared module's parameters would change shape", """
    A shared module has one set of parameters, declared by its first call.  A
    later call with inputs of another shape would need parameters of another
    shape.  The note points at the first call.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            fc = nn.Dense.shared(features=8, name="fc")
            return fc(fc(x[:, :4]))

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            fc = nn.Dense.shared(features=8, name="fc")
            return fc(fc(x))

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT313", "state variable assigned a value of another shape or dtype", """
    A state variable (`self.state(...)`, BatchNorm statistics) keeps its shape and
    dtype across calls, because it is carried in `state` between steps.  Assign
    it an array of exactly the declared shape and dtype.
    """, """
    class Counter(nn.Module):
        def apply(self, x):
            total = self.state("total", (8,))
            total.value = jnp.sum(x, axis=0, keepdims=True)
            return x

    aot.target("counter", Counter, x=aot.f32[2, 8])
    """, """
    class Counter(nn.Module):
        def apply(self, x):
            total = self.state("total", (8,))
            total.value = total.value + jnp.sum(x, axis=0)
            return x

    aot.target("counter", Counter, x=aot.f32[2, 8])
    """)

_entry("AOT314", "not an initializer", """
    An initializer is one of `nn.initializers` (called, when it is a factory:
    `nn.initializers.normal(stddev=0.02)`) or a function `(key, shape, dtype)`
    defined at the top level of the model file.
    """, """
    class Scale(nn.Module):
        def apply(self, x):
            s = self.param("scale", (x.shape[-1],), nn.initializers.normal)
            return x * s

    aot.target("scale", Scale, x=aot.f32[2, 8])
    """, """
    class Scale(nn.Module):
        def apply(self, x):
            s = self.param("scale", (x.shape[-1],), nn.initializers.normal(stddev=0.02))
            return x * s

    aot.target("scale", Scale, x=aot.f32[2, 8])
    """)

_entry("AOT315", "shared module reached a module in a value that cannot carry it", """
    A shared module keeps one parameter set where `.shared(...)` created it.  It
    may be passed to other modules as an argument (alone, or inside a tuple, list
    or dict), as old flax.nn allowed: the receiving module's emitted function then
    takes the shared module's parameter subtree as an extra argument.  Other
    values cannot carry it there: a function (a lambda or nested `def`) that calls
    the shared module, run inside another module, is not able to reach its
    parameters.  Pass the shared module itself.
    """, """
    class Inner(nn.Module):
        def apply(self, x, fn=None):
            return fn(x)

    class Net(nn.Module):
        def apply(self, x):
            fc = nn.Dense.shared(features=8, name="fc")
            return Inner(x, fn=lambda y: fc(y))

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Inner(nn.Module):
        def apply(self, x, layer=None):
            return layer(x)

    class Net(nn.Module):
        def apply(self, x):
            fc = nn.Dense.shared(features=8, name="fc")
            return Inner(x, layer=fc)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT320", "class is not a module", """
    A class used as a module (a target, or called on arrays like a layer) must derive
    from `nn.Module` (or a built-in layer); a plain class that has an `apply` method
    was probably meant to.  Plain classes of the model files are otherwise fine:
    settings objects and helpers whose `__init__` sets attributes and whose methods
    compute (`class C(object):` is `class C:`, as in Python 3; bases may be other such
    classes or `abc.ABC`).  A class deriving from another library's class (a
    TensorFlow or Keras class) cannot be interpreted.
    """, """
    class Net:
        def apply(self, x):
            return x

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return x

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT321", "module without apply", """
    A module class needs an `apply(self, inputs..., hyperparameters...)` method:
    it is what calling the module runs.  A class without one may be the base of
    modules that define it (`class BaseModel(nn.Module)` holding classmethods);
    the error is reported where such a class is called or named by a target.
    """, """
    class Net(nn.Module):
        def forward(self, x):
            return x

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return x

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT322", "recursion too deep", """
    Functions and modules are expanded at build time, so a recursion must end
    after a few dozen levels with static arguments; unbounded recursion (or
    expressions nested too deeply for the resolver) is an error.
    """, """
    def depth(n):
        return depth(n + 1)

    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, depth(0))

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    def depth(n):
        return n if n >= 4 else depth(n + 1)

    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, depth(0))

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT323", "module returns something that is not an array", """
    A module's `apply` (or method) returns arrays, static values (numbers,
    strings, None, dicts of them) or (nested) tuples of those: the arrays become
    the outputs of the generated function, and a module calling it gets the
    static values at build time.  A target's numbers become arrays, as `jax.jit`
    returns them; its strings and non-empty static dicts cannot be outputs.
    A dict of arrays is returned with string keys (a target's dict is its output
    tree, its leaves in JAX's order); random keys cannot be returned.
    """, """
    class Net(nn.Module):
        def apply(self, x, features: int = 4):
            return nn.Dense(x, features), "features"

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x, features: int = 4):
            return nn.Dense(x, features)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT324", "layer used outside a module", """
    Layers and array operations need a module scope (for parameter names and
    emitted code): call them inside a module's `apply`, not at the top level of
    the file or in a target declaration.  A top-level name bound to an array
    expression (`KEY = jax.random.PRNGKey(0)`, a table of `np.array`s) is
    computed again inside each function that reads it, as Python computed it
    when it imported the file; read by another top-level statement (a target's
    hyperparameter), or calling a layer, it is this error.
    """, """
    Y = nn.Dense(jnp.ones((2, 8)), 4)

    class Net(nn.Module):
        def apply(self, x):
            return x + Y

    aot.target("net", Net, x=aot.f32[2, 4])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT325", "decorator not supported", """
    A decorator is applied as Python applies it: called on the function, where
    the static language can call it (`@jax.vmap`, `@jax.custom_jvp`,
    `@f.defjvp`, `@jax.jit`, `@functools.partial(...)` of these, a function of
    the model file); `@nn.module_method` marks module methods and `@nn.module`
    makes a function a module (old flax.nn's function module: the function is
    the module's `apply`; no other decorator with it).  Methods of a dataclass
    or NamedTuple may have `@property` only, and a dataclass takes no other
    class decorator.
    """, """
    import dataclasses

    @dataclasses.dataclass
    class Dims:
        width: int = 4

        @staticmethod
        def default():
            return 4

    class Net(nn.Module):
        def apply(self, x, dims=Dims()):
            return nn.Dense(x, dims.width)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    import dataclasses

    @dataclasses.dataclass
    class Dims:
        width: int = 4

    class Net(nn.Module):
        def apply(self, x, dims=Dims()):
            return nn.Dense(x, dims.width)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT326", "value a module cannot take", """
    A module's inputs become arguments of its generated function: arrays, and
    tuples, lists and dicts of them (an LSTM carry, a batch keyed by name;
    nested, with static values among them), each one argument read on entry.
    What cannot cross: an iterator (a module is specialized once for its
    arguments, so what it took from an iterator would not be taken again), a
    config, dataclass or partial holding arrays, and a dict of arrays keyed by
    anything but strings.
    """, """
    class Add(nn.Module):
        def apply(self, pair):
            return pair[0] + pair[1]

    class Net(nn.Module):
        def apply(self, x):
            return Add({0.5: x, 1.5: x})

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Add(nn.Module):
        def apply(self, pair):
            return pair["a"] + pair["b"]

    class Net(nn.Module):
        def apply(self, x):
            return Add({"a": x, "b": x})

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT327", "(retired) random key passed to a module", """
    No longer reported: since aotflax 0.2 a random key may be passed to a module
    like any array (old flax.nn code hands keys to submodules), and a target may
    take one as an input (`z_rng=aot.key`).  The code stays reserved.
    """, """
    class Noise(nn.Module):
        def apply(self, x, key):
            return x + jax.random.normal(key, x.shape)
    """, """
    class Noise(nn.Module):
        def apply(self, x, key):
            return x + jax.random.normal(key, x.shape)
    """, checked=False)

_entry("AOT330", "build-time work too large", """
    Loops are unrolled at build time, and resolving a file is bounded so a typo
    such as `range(10**9)` becomes an error instead of a hang: loops unroll at
    most 100,000 times, static strings and containers hold at most 2^20 items
    and ints at most 2^16 bits, and one budget of 2,000,000 steps covers the
    statements run, the work of static operations on big values and every
    operation emitted (at most 50,000 per file).  Use `jax.lax.scan` for long
    loops inside the computation, and keep static values small.
    """, """
    class Net(nn.Module):
        def apply(self, x, depth: int = 10**9):
            for _ in range(depth):
                x = nn.Dense(x, 8)
            return x

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x, depth: int = 4):
            for _ in range(depth):
                x = nn.Dense(x, 8)
            return x

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT331", "cannot assign to this", """
    Only names, tuple/list unpacking, items of static lists and dicts, the
    `.value` of state variables, attributes of `self` (for the rest of the
    call, as old flax.nn made a module object per call) and fields of configs
    and non-frozen dataclasses can be assigned.  A method of the module (such
    as `self.param`) cannot be replaced, and other values are read-only.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            self.param = 4
            return nn.Dense(x, self.param)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            self.width = 4
            return nn.Dense(x, self.width)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT332", "cannot assign items of this value", """
    JAX arrays are immutable: build a new array instead (`jnp.where`,
    `jnp.concatenate`).  Items can be assigned only in static lists and dicts.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            x[0] = 1.0
            return x

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            x = jnp.concatenate([jnp.ones((1, 8)), x[1:]], axis=0)
            return x

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT333", "cannot unpack", """
    Tuple unpacking needs exactly as many items as there are targets: a static
    sequence of that length, or an array whose first axis has that size (it
    unpacks along that axis, as Python iterates a jax array:
    `k1, k2 = jax.random.split(key)`).
    """, """
    SIZES = (16, 8)

    class Net(nn.Module):
        def apply(self, x):
            a, b, c = SIZES
            return nn.Dense(x, a)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    SIZES = (16, 8)

    class Net(nn.Module):
        def apply(self, x):
            a, b = SIZES
            return nn.Dense(x, a)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT334", "cannot loop over this value", """
    `for` loops run at build time over static sequences (`range`, tuples,
    lists, `enumerate`, `zip`).  Looping over an array would need its values;
    loop over `range(x.shape[0])` and index, or use `jax.lax.scan`.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            total = 0.0
            for row in x:
                total = total + jnp.sum(row)
            return total

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            total = 0.0
            for i in range(x.shape[0]):
                total = total + jnp.sum(x[i])
            return total

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT335", "condition on an array value", """
    `if`, `while`, `and`, `or`, `not` and conditional expressions are decided at
    build time, so their conditions must be static (hyperparameters, shapes,
    dtypes).  A condition on array values is a computation: select elementwise
    with `jnp.where`, or combine with `jnp.logical_and` / `jnp.logical_or`.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            if jnp.sum(x) > 0:
                x = nn.relu(x)
            return x

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return jnp.where(jnp.sum(x) > 0, nn.relu(x), x)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT340", "name is not defined", """
    The name is not a local variable, an argument, a module-level definition of
    the model file, an imported name or one of the DSL's builtins.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, width)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x, width: int = 4):
            return nn.Dense(x, width)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT341", "invalid string formatting", """
    f-strings and `str.format` are evaluated at build time (for names such as
    `f"block_{i}"`): they may format only static values, with plain fields (no
    attribute access like `{0.shape}`) and reasonable widths.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4, name=f"dense_{x}")

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4, name=f"dense_{x.shape[-1]}")

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT342", "dict key is not static", """
    Dicts are build-time values, so their keys must be static (strings, numbers,
    tuples); arrays can only be values.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            d = {x: 1}
            return x

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            d = {"x": x}
            return d["x"]

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT343", "slice bound is not a static int", """
    Slices select a static part of an array, so `start`, `stop` and `step` must
    be ints known at build time.  For offsets computed from array values use
    `jax.lax.dynamic_slice`.
    """, """
    class Net(nn.Module):
        def apply(self, x, n):
            return x[:, :n]

    aot.target("net", Net, x=aot.f32[2, 8], n=aot.i32[()])
    """, """
    class Net(nn.Module):
        def apply(self, x, n: int = 4):
            return x[:, :n]

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT344", "invalid operands", """
    A static operation failed (division by zero, a type error, a result too large
    to build), or an operator was applied to an array and a value it cannot
    combine with (such as a tuple, or `in` / `is` on arrays).
    """, """
    class Net(nn.Module):
        def apply(self, x, groups: int = 0):
            return nn.Dense(x, x.shape[-1] // groups)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x, groups: int = 2):
            return nn.Dense(x, x.shape[-1] // groups)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT345", "cannot index this value", """
    Indexing a static value (tuple, list, dict, string) failed: the index is out
    of range, the key is missing, or the index is an array.
    """, """
    SIZES = (16, 8)

    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, SIZES[2])

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    SIZES = (16, 8)

    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, SIZES[1])

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT346", "unknown attribute", """
    The attribute does not exist or is not supported by aotflax: a misspelled
    layer (`nn.Dens`), a `jnp` function outside the operation table, or an
    attribute arrays do not have at build time.  Arrays support `shape`, `ndim`,
    `dtype`, `size`, `T` and the array methods of the table.  `self.<name>` is
    an attribute set earlier in the same call (`self.width = 4`) or a method.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dens(x, 4)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT347", "`**` needs a dict", """
    `f(**kwargs)` unpacks a static dict of keyword arguments, so its keys are
    identifiers, as Python requires of keyword names (a key such as
    `"lr=0.1, momentum"` or one with a NUL byte is refused: keyword names can
    reach generated code).
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, **(4,))

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, **{"features": 4})

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT348", "not callable / no such method", """
    The value cannot be called (a number, a tuple, an array), or it has no
    method of that name in the DSL.  Static lists, dicts and strings support a
    few pure methods (`append`, `get`, `items`, `format`, `join`...).
    """, """
    class Net(nn.Module):
        def apply(self, x, width: int = 4):
            return nn.Dense(x, width())

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x, width: int = 4):
            return nn.Dense(x, width)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT349", "builtin failed at build time", """
    Builtins (`len`, `range`, `min`, `max`, `int`, `math.sqrt`...) run at build
    time on static values.  This call received an array, or raised an error on
    its static arguments; for arrays use the `jnp` functions.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, max(x, 4))

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, max(x.shape[-1], 4))

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT350", "partial / shared take keyword arguments", """
    `Module.partial(...)` and `Module.shared(...)` bind hyperparameters by name;
    positional arguments would be ambiguous with the inputs.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            fc = nn.Dense.partial(4)
            return fc(x)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            fc = nn.Dense.partial(features=4)
            return fc(x)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT351", "invalid self.param / self.state arguments", """
    `self.param(name, shape, initializer, dtype=None)` and `self.state(name, shape,
    ...)` need a string name and a static tuple of non-negative ints as shape.
    """, """
    class Scale(nn.Module):
        def apply(self, x):
            s = self.param("scale", x.shape[-1], nn.initializers.ones)
            return x * s

    aot.target("scale", Scale, x=aot.f32[2, 8])
    """, """
    class Scale(nn.Module):
        def apply(self, x):
            s = self.param("scale", (x.shape[-1],), nn.initializers.ones)
            return x * s

    aot.target("scale", Scale, x=aot.f32[2, 8])
    """)

_entry("AOT352", "data-dependent initialization that cannot apply", """
    `self.param(name, None, init)` (old flax.nn's data-dependent initialization,
    as pixelcnn's weight-normalized layers use it) calls `init(key, None)`, a
    function of the model file that may read the module's arrays (its inputs)
    and returns an array or a dict of arrays: that result is the parameter.  The
    target's `init(rng, *example_inputs)` then runs one forward pass on example
    inputs.  A built-in initializer (`nn.initializers.ones`) needs a shape; a
    layer's `kernel_init` cannot read the module's arrays (declare the weights
    with `self.param` and apply the layer with `Layer.call(params, ...)`); and
    initialization from data does not run inside `jax.lax.scan` steps.
    """, """
    class Scale(nn.Module):
        def apply(self, x):
            s = self.param("scale", None, nn.initializers.ones)
            return x * s

    aot.target("scale", Scale, x=aot.f32[2, 8])
    """, """
    class Scale(nn.Module):
        def apply(self, x):
            s = self.param("scale", (x.shape[-1],), nn.initializers.ones)
            return x * s

    aot.target("scale", Scale, x=aot.f32[2, 8])
    """)

_entry("AOT353", "unknown module method", """
    `self.<name>(...)` supports `param`, `state`, `get_param`, `is_initializing`
    and the module's own methods; a module reference supports `partial`,
    `shared` and its `@nn.module_method` methods.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            dense = nn.Dense.shared(features=4, name="dense")
            return dense.forward(x)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            dense = nn.Dense.shared(features=4, name="dense")
            return dense(x)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT354", "invalid self.get_param", """
    `self.get_param("name")` reads the parameters of a submodule (or a
    parameter) declared earlier in the same module, for weight tying.  Declare
    it first, and pass one name.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            w = self.get_param("embed")
            return x @ w["embedding"].T

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, tokens):
            x = nn.Embed(tokens, 10, 8, name="embed")
            w = self.get_param("embed")
            return x @ w["embedding"].T

    aot.target("net", Net, tokens=aot.i32[2, 5])
    """)

_entry("AOT355", "invalid nn.Sequential", """
    `nn.Sequential([...])` takes one list of layers (built-in layers, partially
    applied modules or activation functions), and the result is called with one
    input.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Sequential(nn.Dense.partial(features=4), nn.relu)(x)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Sequential([nn.Dense.partial(features=4), nn.relu])(x)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT356", "invalid state collection name", """
    State variables live in a collection of `state` (BatchNorm uses
    `batch_stats`).  A collection becomes an argument of generated functions, so
    its name is an ASCII identifier that they do not already use: not a keyword
    or builtin, not `params`, `rng`, `jax`, `jnp`, `np` or `optax`.
    """, """
    class Counter(nn.Module):
        def apply(self, x):
            n = self.state("count", (), collection="params")
            n.value = n.value + 1.0
            return x

    aot.target("counter", Counter, x=aot.f32[2, 8])
    """, """
    class Counter(nn.Module):
        def apply(self, x):
            n = self.state("count", (), collection="counters")
            n.value = n.value + 1.0
            return x

    aot.target("counter", Counter, x=aot.f32[2, 8])
    """)

_entry("AOT360", "scan needs a step function", """
    `jax.lax.scan(step, init, xs)` is emitted as a real scan over a step function
    `(carry, x) -> (carry, y)`: a `def` inside `apply` (so it can call shared
    layers), a lambda, or a module (called at every step with one parameter set,
    as `nn.LSTMCell.partial(name="cell")`).
    """, """
    class Net(nn.Module):
        def apply(self, xs):
            carry, ys = jax.lax.scan(2.0, xs[0], xs)
            return ys

    aot.target("net", Net, xs=aot.f32[5, 8])
    """, """
    class Net(nn.Module):
        def apply(self, xs):
            def step(c, x):
                return c + x, c

            carry, ys = jax.lax.scan(step, xs[0], xs)
            return ys

    aot.target("net", Net, xs=aot.f32[5, 8])
    """)

_entry("AOT361", "invalid scan inputs", """
    The arrays scanned over (`xs`) must share one leading length, and a scan
    needs `xs` or `length=`; `init` and `xs` must be arrays or tuples of arrays.
    """, """
    class Net(nn.Module):
        def apply(self, a, b):
            def step(c, x):
                return c + x[0] + x[1], c

            carry, ys = jax.lax.scan(step, a[0], (a, b))
            return ys

    aot.target("net", Net, a=aot.f32[5, 8], b=aot.f32[4, 8])
    """, """
    class Net(nn.Module):
        def apply(self, a, b):
            def step(c, x):
                return c + x[0] + x[1], c

            carry, ys = jax.lax.scan(step, a[0], (a, b))
            return ys

    aot.target("net", Net, a=aot.f32[5, 8], b=aot.f32[5, 8])
    """)

_entry("AOT362", "state updated inside scan", """
    A scan step may call shared layers and draw random keys (`nn.make_rng()`,
    dropout: each step gets the call site's key folded with its index), but may
    not update state variables (BatchNorm statistics, `self.state`) yet.  Update
    the state outside the scan, or return the values from the step and update it
    after.
    """, """
    class Net(nn.Module):
        def apply(self, xs):
            def step(c, x):
                y = nn.BatchNorm(x, use_running_average=False)
                return c + y, c

            carry, ys = jax.lax.scan(step, xs[0], xs)
            return ys

    aot.target("net", Net, xs=aot.f32[5, 4, 8])
    """, """
    class Net(nn.Module):
        def apply(self, xs):
            xs = nn.BatchNorm(xs, use_running_average=False)

            def step(c, x):
                return c + x, c

            carry, ys = jax.lax.scan(step, xs[0], xs)
            return ys

    aot.target("net", Net, xs=aot.f32[5, 4, 8])
    """)

_entry("AOT363", "scan step must return (carry, y)", """
    A scan step returns a pair: the new carry and the per-step output (which may
    be None).
    """, """
    class Net(nn.Module):
        def apply(self, xs):
            def step(c, x):
                return c + x

            carry, ys = jax.lax.scan(step, xs[0], xs)
            return carry

    aot.target("net", Net, xs=aot.f32[5, 8])
    """, """
    class Net(nn.Module):
        def apply(self, xs):
            def step(c, x):
                return c + x, None

            carry, ys = jax.lax.scan(step, xs[0], xs)
            return carry

    aot.target("net", Net, xs=aot.f32[5, 8])
    """)

_entry("AOT364", "scan carry changes type", """
    The carry a scan step returns must have exactly the shapes and dtypes of the
    carry it receives (`init`), since the loop feeds it back.
    """, """
    class Net(nn.Module):
        def apply(self, xs):
            def step(c, x):
                return jnp.concatenate([c, x]), c

            carry, ys = jax.lax.scan(step, xs[0], xs)
            return ys

    aot.target("net", Net, xs=aot.f32[5, 8])
    """, """
    class Net(nn.Module):
        def apply(self, xs):
            def step(c, x):
                return c + x, c

            carry, ys = jax.lax.scan(step, xs[0], xs)
            return ys

    aot.target("net", Net, xs=aot.f32[5, 8])
    """)

# ---------------------------------------------------------------------- AOT37x: modules

_entry("AOT370", "shared module with state called in another module", """
    A shared module passed to another module is called there with the parameters
    of the module that created it.  State (BatchNorm statistics, `self.state`
    variables, a decode cache) cannot travel the same way: each call returns its
    new state to the module that made the call, and the state of a shared module
    belongs to its creator.  Call a shared module that keeps state in the module
    that created it, and pass its outputs on.
    """, """
    class Head(nn.Module):
        def apply(self, x, norm=None):
            return norm(x)

    class Net(nn.Module):
        def apply(self, x):
            norm = nn.BatchNorm.shared(use_running_average=False, name="norm")
            return Head(x, norm=norm)

    aot.target("net", Net, x=aot.f32[2, 8])
    """, """
    class Head(nn.Module):
        def apply(self, x):
            return nn.relu(x)

    class Net(nn.Module):
        def apply(self, x):
            norm = nn.BatchNorm.shared(use_running_average=False, name="norm")
            return Head(norm(x))

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT371", "part of old flax.nn's Cache API that does not map", """
    Old flax.nn's `nn.attention.Cache` is mapped onto the target's explicit `cache`
    state collection.  Model code may call `cache.retrieve()` for its module's
    entry, read the decode position `entry.i`, update it with
    `entry.replace(i=...)` and `cache.store(entry)` it; attention layers take
    `cache=` and keep their keys and values themselves.  A module's own entry
    holds the position only: `entry.key` / `entry.value`, `replace` of other
    fields and storing other values have no counterpart.  Keep other decode
    arrays in state variables, `self.state(name, shape, init, collection="cache")`.
    """, """
    class Pos(nn.Module):
        def apply(self, x, cache=None):
            entry = cache.retrieve(None)
            cache.store(entry.replace(key=x))
            return x

    aot.target("pos", Pos.partial(cache=nn.attention.Cache().initialize_cache((2, 8))),
               x=aot.f32[2, 1, 4])
    """, """
    class Pos(nn.Module):
        def apply(self, x, cache=None):
            entry = cache.retrieve(None)
            cache.store(entry.replace(i=entry.i + 1))
            return x

    aot.target("pos", Pos.partial(cache=nn.attention.Cache().initialize_cache((2, 8))),
               x=aot.f32[2, 1, 4])
    """)

_entry("AOT372", "decode cache without a shape, or used where it cannot apply", """
    A decode target passes `nn.attention.Cache().initialize_cache((batch...,
    max_length))` to its module: the batch dimensions and the number of positions
    the cache holds.  Attention with `cache=` needs `causal_mask=True` (old
    flax.nn caches causal self-attention only), queries of those batch dimensions,
    and not also `decode=True`; segmentation masks do not apply while decoding.
    """, """
    class Step(nn.Module):
        def apply(self, x, cache=None):
            return nn.SelfAttention(x, 2, causal_mask=True, cache=cache)

    aot.target("step", Step.partial(cache=nn.attention.Cache()), x=aot.f32[2, 1, 4])
    """, """
    class Step(nn.Module):
        def apply(self, x, cache=None):
            return nn.SelfAttention(x, 2, causal_mask=True, cache=cache)

    aot.target("step", Step.partial(cache=nn.attention.Cache().initialize_cache((2, 8))),
               x=aot.f32[2, 1, 4])
    """)

_entry("AOT373", "parameters given to Module.call do not fit the module", """
    `Module.call(params, *inputs, **hyperparameters)` applies a built-in layer or a
    user module with parameters the caller passes (weights made by a hypernetwork,
    tied or transformed weights): `params` is a dict of arrays, nested like the
    module's own parameter tree (`{"kernel": w, "bias": b}` for `nn.Dense`, the
    result of `self.get_param("block")` for a submodule).  Every parameter the
    module declares must be there with the declared shape and dtype; nothing is
    added to the caller's parameter tree.  A module applied this way cannot keep
    state (BatchNorm statistics): call the module itself for that.
    """, """
    class Hyper(nn.Module):
        def apply(self, x, z):
            w = nn.Dense(z, 12, name="hyper").reshape((4, 3))
            return nn.Dense.call({"kernel": w}, x, 3)

    aot.target("hyper", Hyper, x=aot.f32[2, 4], z=aot.f32[1, 2])
    """, """
    class Hyper(nn.Module):
        def apply(self, x, z):
            w = nn.Dense(z, 12, name="hyper").reshape((4, 3))
            return nn.Dense.call({"kernel": w}, x, 3, bias=False)

    aot.target("hyper", Hyper, x=aot.f32[2, 4], z=aot.f32[1, 2])
    """)

_entry("AOT374", "invalid subclass of a built-in layer or module", """
    A class may subclass a built-in layer to override `param(self, name, shape,
    init)` (weight-standardized convolutions: `class StdConv(nn.Conv)`).  The
    layer's own rule runs; each parameter it declares goes through the override,
    whose `super().param(name, shape, init)` is the parameter itself, and the
    layer uses what the override returns, which must keep the shape and dtype.
    Such a class has the layer as its only base and does not override `apply`;
    to write a new layer, subclass `nn.Module` and call the layer in its `apply`.
    A module may derive from one module of the model files (`class Child(Base)`),
    the class itself, not a `Base.partial(...)`.
    """, """
    class Scaled(nn.Dense):
        def param(self, name, shape, init):
            return super().param(name, shape, init).sum(axis=0)

    class Net(nn.Module):
        def apply(self, x):
            return Scaled(x, 3)

    aot.target("net", Net, x=aot.f32[2, 4])
    """, """
    class Scaled(nn.Dense):
        def param(self, name, shape, init):
            return super().param(name, shape, init) * 0.5

    class Net(nn.Module):
        def apply(self, x):
            return Scaled(x, 3)

    aot.target("net", Net, x=aot.f32[2, 4])
    """)

# ====================================================================== AOT4xx: targets

_entry("AOT365", "invalid jax.vmap", """
    `jax.vmap(f, in_axes=0, out_axes=0)(*arrays)` is emitted as a real `jax.vmap`
    over `f` resolved for one row.  Its arguments are arrays (bind static values
    with a lambda), the mapped axes share one size, `out_axes` is one int in range
    for every output, and `f` uses array operations only: layers, randomness and
    state belong to modules.
    """, """
    def scale(x, s):
        return x * s

    class Net(nn.Module):
        def apply(self, x):
            return jax.vmap(scale)(x, 2.0)

    aot.target("net", Net, x=aot.f32[4, 3])
    """, """
    def scale(x, s):
        return x * s

    class Net(nn.Module):
        def apply(self, x):
            return jax.vmap(lambda row: scale(row, 2.0))(x)

    aot.target("net", Net, x=aot.f32[4, 3])
    """)

_entry("AOT366", "invalid jax.custom_jvp or jax.custom_vjp", """
    `jax.custom_jvp(f)` (or `@jax.custom_jvp`) on a function of the model file
    keeps its derivative rule, registered with `@f.defjvp` (a rule
    `(primals, tangents) -> (primal_out, tangent_out)`) or `f.defjvps(*rules)`;
    both are emitted as module-level functions with the same decorators.
    `jax.custom_vjp(f)` keeps its rules from `f.defvjp(fwd, bwd)`: `fwd` returns
    `(output, residuals)`, `bwd(residuals, cotangent)` a tuple with one array per
    argument; the three are emitted, the backward rule decorated
    `@_runtime.backward_of(f, f_fwd)`, which registers them as JAX does.  The
    function takes arrays, is called inside a module, and uses array operations
    only (no layers, randomness or state); `nondiff_argnums` is not supported.
    """, """
    @jax.custom_jvp
    def safe_log(x):
        return jnp.log(x)

    class Net(nn.Module):
        def apply(self, x):
            return safe_log(x)

    aot.target("net", Net, x=aot.f32[4])
    """, """
    @jax.custom_jvp
    def safe_log(x):
        return jnp.log(x)

    @safe_log.defjvp
    def safe_log_jvp(primals, tangents):
        x, = primals
        t, = tangents
        return safe_log(x), t / jnp.maximum(x, 1.0)

    class Net(nn.Module):
        def apply(self, x):
            return safe_log(x)

    aot.target("net", Net, x=aot.f32[4])
    """)

_entry("AOT400", "invalid aot.target call", """
    `aot.target("name", Module_or_partial, input=aot.f32[...], ...,
    platforms=..., devices=..., method=...)` is called at the top level of the
    model file with a name and a module.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return x

    aot.target(Net, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return x

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT401", "target must name a user module", """
    A target compiles a module defined in the model file (possibly partially
    applied).  To compile a single built-in layer, wrap it in a module.
    """, """
    aot.target("dense", nn.Dense, x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4)

    aot.target("dense", Net, x=aot.f32[2, 8])
    """)

_entry("AOT402", "target method does not exist", """
    `method=` names a method of the module (decorated with `@nn.module_method`)
    that the target exposes instead of `apply`.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return x

    aot.target("net", Net, x=aot.f32[2, 8], method="encode")
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return x

        @nn.module_method
        def encode(self, x):
            return nn.Dense(x, 4, name="enc")

    aot.target("net", Net, x=aot.f32[2, 8], method="encode")
    """)

_entry("AOT403", "target input does not exist", """
    Each keyword of `aot.target` other than `platforms`, `devices` and `method`
    names an input of the module's `apply`; the hint lists its arguments.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4)

    aot.target("net", Net, inputs=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4)

    aot.target("net", Net, x=aot.f32[2, 8])
    """)

_entry("AOT404", "symbolic dimension not allowed here", """
    A string dimension (`aot.f32["batch", 784]`) is symbolic: it is compiled
    through `jax.export` shape polymorphism.  It can only appear in a target's
    input specs, where the build knows how to trace it.
    """, """
    class Net(nn.Module):
        def apply(self, x, n: int = 4):
            return nn.Dense(x, n)

    aot.target("net", Net.partial(n=aot.f32["batch"]), x=aot.f32[2, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x, n: int = 4):
            return nn.Dense(x, n)

    aot.target("net", Net, x=aot.f32["batch", 8])
    """, checked=False)

_entry("AOT405", "target input is not an array input", """
    A spec was given for an argument that the module uses as a static value (a
    hyperparameter).  Bind hyperparameters with `Module.partial(...)`, and give
    specs only for array inputs.
    """, """
    class Net(nn.Module):
        def apply(self, x, width):
            return nn.Dense(x, 4)

    aot.target("net", Net.partial(width=None), x=aot.f32[2, 8], width=aot.i32[2])
    """, """
    class Net(nn.Module):
        def apply(self, x, width: int = 4):
            return nn.Dense(x, width)

    aot.target("net", Net.partial(width=4), x=aot.f32[2, 8])
    """, checked=False)

_entry("AOT406", "target name is not an identifier", """
    A target becomes an attribute of the generated module (`generated.net.T`),
    so its name must be an ASCII identifier of at most 100 characters that the
    module does not already use: not a keyword or builtin, not `jax` / `jnp` /
    `np`, not the name of a module class of the file, and not starting with `_`
    (the module's helpers, such as `_net_init`, are named so).
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return x

    aot.target("net-b32", Net, x=aot.f32[32, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return x

    aot.target("net_b32", Net, x=aot.f32[32, 8])
    """)

_entry("AOT407", "target declared twice", """
    Target names are unique within a model file.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return x

    aot.target("net", Net, x=aot.f32[2, 8])
    aot.target("net", Net, x=aot.f32[4, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return x

    aot.target("net_b2", Net, x=aot.f32[2, 8])
    aot.target("net_b4", Net, x=aot.f32[4, 8])
    """)

_entry("AOT408", "unknown platform", """
    `platforms=` lists platforms among `cpu`, `cuda` and `tpu` (JAX's names).
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return x

    aot.target("net", Net, x=aot.f32[2, 8], platforms=("gpu",))
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return x

    aot.target("net", Net, x=aot.f32[2, 8], platforms=("cuda",))
    """)

_entry("AOT409", "target input is not a spec", """
    Inputs of a target are given as specs such as `aot.f32[8, 784]`, or trees of
    them: dicts with string keys, tuples and lists (`batch={"tokens":
    aot.i32[8, 128], "mask": aot.f32[8, 128]}`), nested at most 16 levels, with at
    most 1,024 arrays; static hyperparameters are bound with `Module.partial(...)`.
    """, """
    class Net(nn.Module):
        def apply(self, x, width: int = 4):
            return nn.Dense(x, width)

    aot.target("net", Net, x=aot.f32[2, 8], width=8)
    """, """
    class Net(nn.Module):
        def apply(self, x, width: int = 4):
            return nn.Dense(x, width)

    aot.target("net", Net.partial(width=8), x=aot.f32[2, 8])
    """)

_entry("AOT410", "invalid input dimension", """
    A spec's dimensions are non-negative ints, or ASCII identifiers (`"batch"`)
    for symbolic dimensions.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return x

    aot.target("net", Net, x=aot.f32[-1, 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return x

    aot.target("net", Net, x=aot.f32["batch", 8])
    """)

_entry("AOT411", "symbolic dimension used as a constant", """
    A symbolic dimension is only known when the program runs, so the model must
    not depend on its value at build time: no static `if` or loop on it, no
    parameter whose shape it sets, and no passing it to a submodule as a
    hyperparameter.  Arithmetic on it where the module reads it is fine
    (`x.reshape((x.shape[0] * 8,))`): generated code reads the size from the
    array when it runs.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, x.shape[0])

    aot.target("net", Net, x=aot.f32["batch", 8])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return x.reshape((-1,))

    aot.target("net", Net, x=aot.f32["batch", 8])
    """, checked=False)


_entry("AOT412", "invalid buckets", """
    `buckets={"batch": (1, 8, 32)}` compiles one native executable per size of a
    symbolic dimension (per combination of sizes, with several), and `load()` runs
    a request on the smallest bucket that fits, padding its inputs and slicing its
    outputs back.  The keys must be symbolic dimensions of the target's inputs,
    every symbolic dimension of the target needs buckets (a native executable has
    a size for each), and the sizes are distinct positive ints.  A training target
    cannot be bucketed (its gradients mix the rows of the batch), nor can a target
    whose state carries the dimension (a decoding cache sized by the batch).
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4)

    aot.target("net", Net, x=aot.f32["batch", 8], buckets={"rows": (1, 8)})
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4)

    aot.target("net", Net, x=aot.f32["batch", 8], buckets={"batch": (1, 8)})
    """)


_entry("AOT413", "padding would change the result", """
    A bucketed target pads every request along the bucketed dimension to the next
    bucket size, so each output position must depend on the same input positions
    alone.  The build proves it over the whole program and rejects an operation
    that combines positions along the dimension: a reduction or mean over it,
    BatchNorm with batch statistics (`use_running_average=False`), a contraction,
    a convolution or pooling window sliding along it, a reshape that merges it
    with another axis, a slice that shifts it, random numbers drawn over it, its
    size used as a number.  Attention over a padded length is safe when its mask
    hides the padded keys: a causal mask, or a mask built (through products,
    casts and reshapes, e.g. `nn.make_attention_mask(mask, mask)`) from an input
    declared in `masks={"length": "mask"}`, which `load()` pads with zeros.  Drop
    `buckets=` to ship the portable export instead (it compiles each new size).
    """, """
    class Net(nn.Module):
        def apply(self, x):
            y = nn.Dense(x, 4)
            return y - jnp.mean(y, axis=0, keepdims=True)

    aot.target("net", Net, x=aot.f32["batch", 8], buckets={"batch": (1, 8)})
    """, """
    class Net(nn.Module):
        def apply(self, x):
            y = nn.Dense(x, 4)
            return y - jnp.mean(y, axis=-1, keepdims=True)

    aot.target("net", Net, x=aot.f32["batch", 8], buckets={"batch": (1, 8)})
    """)


_entry("AOT414", "invalid pad_value or masks", """
    `pad_value={"tokens": 0}` gives the value padded positions of an input get
    (default 0; a number that fits the input's dtype), and `masks={"length":
    "mask"}` names the inputs that mask a dimension's padded positions; a mask
    input is padded with 0 (false), which is what makes attention over the padded
    length safe.  Both name inputs of a target with `buckets=`, and only inputs
    that carry a bucketed dimension.
    """, """
    class Net(nn.Module):
        def apply(self, tokens):
            return nn.Embed(tokens, num_embeddings=10, features=4)

    aot.target("net", Net, tokens=aot.i32["batch", 8], buckets={"batch": (1, 8)},
               pad_value={"ids": 0})
    """, """
    class Net(nn.Module):
        def apply(self, tokens):
            return nn.Embed(tokens, num_embeddings=10, features=4)

    aot.target("net", Net, tokens=aot.i32["batch", 8], buckets={"batch": (1, 8)},
               pad_value={"tokens": 0})
    """)


_entry("AOT415", "tree input where arrays are needed", """
    A target input may be a tree of specs (a dict with string keys, a tuple or
    a list, nested: `batch={"tokens": aot.i32[8, 128], "mask": aot.bool_[8, 128]}`),
    which `apply` and `load()` take as that tree.  Serving buckets (`buckets=`,
    `pad_value=`, `masks=`), targets over several processes (`processes=`) and
    `microbatches=` name and split inputs one array at a time, and take array
    inputs only: declare each array as an input of its own and build the dict
    inside `apply`.
    """, """
    class Net(nn.Module):
        def apply(self, batch):
            return nn.Dense(batch["x"], 4)

    aot.target("net", Net, batch={"x": aot.f32["batch", 8]}, buckets={"batch": (1, 8)})
    """, """
    class Net(nn.Module):
        def apply(self, x):
            batch = {"x": x}
            return nn.Dense(batch["x"], 4)

    aot.target("net", Net, x=aot.f32["batch", 8], buckets={"batch": (1, 8)})
    """)

_entry("AOT420", "invalid optax arguments", """
    The optimizer of a training target is written with optax in the model file
    (`optax.adam(1e-3)`) and copied into the generated code, so its arguments
    must be static values (numbers, tuples, strings) or other optax objects, such as
    optax schedules; functions of the model file cannot be passed.
    """, """
    import optax

    def schedule(step):
        return 1e-3 * 0.9 ** (step / 100)

    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    def loss(logits, labels):
        return -jnp.mean(jnp.sum(nn.one_hot(labels, 3) * nn.log_softmax(logits), axis=-1))

    aot.train_target("train", MLP, loss=loss, optimizer=optax.adam(schedule),
                     x=aot.f32[4, 5], labels=aot.i32[4])
    """, """
    import optax

    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    def loss(logits, labels):
        return -jnp.mean(jnp.sum(nn.one_hot(labels, 3) * nn.log_softmax(logits), axis=-1))

    aot.train_target("train", MLP, loss=loss,
                     optimizer=optax.adam(optax.exponential_decay(1e-3, 100, 0.9)),
                     x=aot.f32[4, 5], labels=aot.i32[4])
    """)

_entry("AOT421", "invalid parameter groups", """
    `aot.MultiOptimizer((traversal, optimizer), ...)` takes pairs of an
    `aot.ModelParamTraversal(filter)` and an optax optimizer.  Filters run at build
    time on every parameter path ("/Dense_0/kernel") and must return a static
    bool; parameters no filter selects are frozen.
    """, """
    import optax

    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    def loss(logits, labels):
        return -jnp.mean(jnp.sum(nn.one_hot(labels, 3) * nn.log_softmax(logits), axis=-1))

    aot.train_target("train", MLP, loss=loss,
                     optimizer=aot.MultiOptimizer(optax.sgd(0.1)),
                     x=aot.f32[4, 5], labels=aot.i32[4])
    """, """
    import optax

    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    def loss(logits, labels):
        return -jnp.mean(jnp.sum(nn.one_hot(labels, 3) * nn.log_softmax(logits), axis=-1))

    aot.train_target("train", MLP, loss=loss,
                     optimizer=aot.MultiOptimizer(
                         (aot.ModelParamTraversal(lambda path, p: "bias" not in path),
                          optax.sgd(0.1))),
                     x=aot.f32[4, 5], labels=aot.i32[4])
    """)

_entry("AOT422", "missing or invalid optimizer", """
    A training target needs `optimizer=`: an optax optimizer (`optax.adam(1e-3)`)
    or an `aot.MultiOptimizer` of parameter groups.
    """, """
    import optax

    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    def loss(logits, labels):
        return -jnp.mean(jnp.sum(nn.one_hot(labels, 3) * nn.log_softmax(logits), axis=-1))

    aot.train_target("train", MLP, loss=loss, optimizer="adam",
                     x=aot.f32[4, 5], labels=aot.i32[4])
    """, """
    import optax

    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    def loss(logits, labels):
        return -jnp.mean(jnp.sum(nn.one_hot(labels, 3) * nn.log_softmax(logits), axis=-1))

    aot.train_target("train", MLP, loss=loss, optimizer=optax.adam(1e-3),
                     x=aot.f32[4, 5], labels=aot.i32[4])
    """)

_entry("AOT423", "missing or invalid loss function", """
    A training target needs `loss=`, a function of the model file that takes the
    model output first and then the batch inputs by name:
    `loss(logits, labels)`.
    """, """
    import optax

    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    aot.train_target("train", MLP, optimizer=optax.adam(1e-3),
                     x=aot.f32[4, 5], labels=aot.i32[4])
    """, """
    import optax

    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    def loss(logits, labels):
        return -jnp.mean(jnp.sum(nn.one_hot(labels, 3) * nn.log_softmax(logits), axis=-1))

    aot.train_target("train", MLP, loss=loss, optimizer=optax.adam(1e-3),
                     x=aot.f32[4, 5], labels=aot.i32[4])
    """)

_entry("AOT424", "loss input not declared", """
    Every argument of the loss after the model output is a batch input of the
    training step and needs a spec in the train target (or a default value).
    """, """
    import optax

    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    def loss(logits, labels):
        return -jnp.mean(jnp.sum(nn.one_hot(labels, 3) * nn.log_softmax(logits), axis=-1))

    aot.train_target("train", MLP, loss=loss, optimizer=optax.adam(1e-3), x=aot.f32[4, 5])
    """, """
    import optax

    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    def loss(logits, labels):
        return -jnp.mean(jnp.sum(nn.one_hot(labels, 3) * nn.log_softmax(logits), axis=-1))

    aot.train_target("train", MLP, loss=loss, optimizer=optax.adam(1e-3),
                     x=aot.f32[4, 5], labels=aot.i32[4])
    """)

_entry("AOT425", "loss does not return a scalar", """
    The loss is differentiated with respect to the parameters, so it returns a
    float scalar array, optionally with a dict of metric arrays:
    `return loss, {"accuracy": acc}`.
    """, """
    import optax

    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    def loss(logits, labels):
        return jnp.sum(nn.one_hot(labels, 3) * nn.log_softmax(logits), axis=-1)

    aot.train_target("train", MLP, loss=loss, optimizer=optax.adam(1e-3),
                     x=aot.f32[4, 5], labels=aot.i32[4])
    """, """
    import optax

    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    def loss(logits, labels):
        return -jnp.mean(jnp.sum(nn.one_hot(labels, 3) * nn.log_softmax(logits), axis=-1))

    aot.train_target("train", MLP, loss=loss, optimizer=optax.adam(1e-3),
                     x=aot.f32[4, 5], labels=aot.i32[4])
    """)


_entry("AOT426", "invalid after_update hook", """
    `aot.train_target(..., after_update=fn)` applies `fn(params) -> params`, a
    function of the model file, to the parameters after each optimizer update,
    inside the train step (an orthogonal projection of the kernels, a clipping
    of norms).  It must return the whole parameter tree with the same paths,
    shapes and dtypes; `aot.ModelParamTraversal(...).update(f, params)` returns
    it with `f` applied to the selected parameters.  `after_update=` belongs to
    `aot.train_target` only.
    """, """
    import optax

    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    def loss(y):
        return jnp.mean(y ** 2)

    def kernels_only(params):
        return {"Dense_0": {"kernel": params["Dense_0"]["kernel"]}}

    aot.train_target("train", MLP, loss=loss, optimizer=optax.sgd(0.1),
                     after_update=kernels_only, x=aot.f32[4, 5])
    """, """
    import optax

    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    def loss(y):
        return jnp.mean(y ** 2)

    KERNELS = aot.ModelParamTraversal(lambda path, param: path.endswith("/kernel"))

    def orthogonalize(params):
        return KERNELS.update(lambda k: jnp.linalg.qr(k)[0], params)

    aot.train_target("train", MLP, loss=loss, optimizer=optax.sgd(0.1),
                     after_update=orthogonalize, x=aot.f32[4, 5])
    """)

_entry("AOT427", "invalid microbatches", """
    `microbatches=N` splits every input of a train step along its first axis
    into N equal slices and adds up their gradients in one executable, so N
    must be a positive int that divides the first dimension of every input.
    It belongs to `aot.train_target` only.
    """, """
    import optax

    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    def loss(y):
        return jnp.mean(y ** 2)

    aot.train_target("train", MLP, loss=loss, optimizer=optax.sgd(0.1), microbatches=3,
                     x=aot.f32[8, 5])
    """, """
    import optax

    class MLP(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    def loss(y):
        return jnp.mean(y ** 2)

    aot.train_target("train", MLP, loss=loss, optimizer=optax.sgd(0.1), microbatches=4,
                     x=aot.f32[8, 5])
    """)

_entry("AOT430", "invalid device mesh", """
    `devices=aot.mesh(data=2, model=4)` names the axes of a device mesh and their
    sizes (positive ints); the target is compiled for their product of devices.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 8)

    aot.target("net", Net, x=aot.f32[8, 16], devices=aot.mesh(data=0))
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 8)

    aot.target("net", Net, x=aot.f32[8, 16], devices=aot.mesh(data=2))
    """)

_entry("AOT431", "invalid sharding rules", """
    `param_sharding=[("pattern", (axis or None, ...)), ...]` partitions the
    parameters whose path matches the `fnmatch` pattern ("*/kernel") over axes
    of the target's mesh, so it needs `devices=aot.mesh(...)` and may only name
    that mesh's axes.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 8)

    aot.target("net", Net, x=aot.f32[8, 16], devices=aot.mesh(data=2, model=2),
               param_sharding=[("*/kernel", (None, "tensor"))])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 8)

    aot.target("net", Net, x=aot.f32[8, 16], devices=aot.mesh(data=2, model=2),
               param_sharding=[("*/kernel", (None, "model"))])
    """)

_entry("AOT432", "sharding does not fit a parameter", """
    A sharding rule gives a parameter more partitioned dimensions than it has,
    or splits a dimension over a mesh axis whose size does not divide it.  The
    note points at the parameter's declaration.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 6)

    aot.target("net", Net, x=aot.f32[8, 16], devices=aot.mesh(data=2, model=4),
               param_sharding=[("*/kernel", (None, "model"))])
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 8)

    aot.target("net", Net, x=aot.f32[8, 16], devices=aot.mesh(data=2, model=4),
               param_sharding=[("*/kernel", (None, "model"))])
    """)

_entry("AOT433", "invalid processes", """
    `processes=N` spreads a target's devices over N `jax.distributed`
    processes (hosts).  The processes split the mesh's first axis (the data
    axis, or `devices=` itself) into equal blocks, one per process, so each
    process feeds whole rows of the batch: N must be a positive int dividing
    that axis, and the inputs' shapes must be fixed.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 8)

    aot.target("net", Net, x=aot.f32[8, 16], devices=aot.mesh(data=2, model=4), processes=4)
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 8)

    aot.target("net", Net, x=aot.f32[8, 16], devices=aot.mesh(data=4, model=2), processes=4)
    """)

_entry("AOT440", "invalid TPU topology", """
    `tpu=` (and `--tpu-topology` on the command line) names the TPU slice a
    target's native executable is cross-compiled for, as libtpu spells it:
    `<generation>:<chips per axis>`, with a generation among v4, v5e, v5p and
    v6e ("v5e:2x2" is one TPU v5e host of 4 chips, "v5e:4x4" a slice of 16
    chips on 4 hosts, "v4:2x2x2" 8 chips with 2 devices each on 2 hosts).  A
    slice larger than one host spans whole hosts, and it must have at least as
    many devices as the target runs on (`devices=`).
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 8)

    aot.target("net", Net, x=aot.f32[8, 16], tpu="v5litepod-4")
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 8)

    aot.target("net", Net, x=aot.f32[8, 16], tpu="v5e:2x2")
    """)

_entry("AOT441", "unknown GPU target", """
    `gpu=` names a GPU description shipped with aotflax (`h100`, `h200`), for
    which the build cross-compiles a CUDA executable without a GPU.  A model
    file cannot name a file; another GPU's GpuTargetConfig text proto is given
    on the command line (`--gpu-target path/to/gpu.txtpb`).
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 8)

    aot.target("net", Net, x=aot.f32[8, 16], gpu="a100")
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 8)

    aot.target("net", Net, x=aot.f32[8, 16], gpu="h100")
    """)

_entry("AOT442", "hardware named for a platform the target does not list", """
    `tpu=` or `gpu=` names hardware of a platform (tpu, cuda) that the
    target's explicit `platforms=` leaves out.  Without `platforms=`, naming
    the hardware adds its platform; with it, list the platform too.
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 8)

    aot.target("net", Net, x=aot.f32[8, 16], platforms=("cpu",), tpu="v5e:2x2")
    """, """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 8)

    aot.target("net", Net, x=aot.f32[8, 16], platforms=("cpu", "tpu"), tpu="v5e:2x2")
    """)

_entry("AOT450", "cross-compiler not installed", """
    The build cross-compiles for hardware a target names (`tpu=`, `gpu=`,
    `--tpu-topology`, `--gpu-target`), and the compiler for it is missing:
    libtpu for TPUs, jax's CUDA plugin for GPUs.  `aotflax install-toolchain
    tpu` (or `cuda`) installs it, pinned to the installed jax, into a per-user
    cache (~/.cache/aotflax, or AOTFLAX_TOOLCHAINS) that only the compile step
    loads, so that jax elsewhere on this host does not start probing for a TPU
    or a GPU.  Nothing is written until it is installed.
    """, """
    # on a build host without libtpu
    aot.target("net", Net, x=aot.f32[8, 16], tpu="v5e:2x2")
    """, """
    # after `aotflax install-toolchain tpu`
    aot.target("net", Net, x=aot.f32[8, 16], tpu="v5e:2x2")
    """, checked=False)

_entry("AOT451", "cross-compiler refused the hardware", """
    libtpu (or jax's CUDA plugin) did not accept the named TPU topology (GPU
    target), or compiling a target for it failed; the message is the
    compiler's own.  The topology's shape is checked by aotflax first, so this
    names what only libtpu knows: a generation an older libtpu predates, a
    libtpu that does not load on this host.
    """, """
    # TPU_LIBRARY_PATH names a libtpu older than TPU v6e
    aot.target("net", Net, x=aot.f32[8, 16], tpu="v6e:2x2")
    """, """
    # unset TPU_LIBRARY_PATH; `aotflax install-toolchain tpu` installs this jax's libtpu
    aot.target("net", Net, x=aot.f32[8, 16], tpu="v6e:2x2")
    """, checked=False)


#: Every entry by code.
CODES: dict[str, Entry] = {e.code: e for e in _ENTRIES}


def explain(code: str) -> int:
    """Print the explanation of `code` (e.g. "AOT311"); 0, or 1 for an unknown code."""
    key = code.strip().upper()
    if key.isdigit():
        key = "AOT" + key
    entry = CODES.get(key)
    if entry is None:
        print(f"error: unknown diagnostic code {code!r}; codes are AOT100..AOT451 "
              f"({len(CODES)} of them; see aotflax/codes.py)", file=sys.stderr)
        return 1
    sys.stdout.write(entry.render())
    return 0
