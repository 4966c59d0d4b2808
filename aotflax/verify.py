"""Verify: trace the emitted code with `jax.eval_shape` and compare with resolve.

Resolve computes every shape and dtype statically; here the generated module is
imported (it is generated code, never the model file) and JAX traces each
emitted function abstractly.  Any disagreement is a bug in aotflax and is
reported as an internal error with both sides, never silently accepted.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import linecache
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from .diagnostics import BuildError, Diagnostic, InternalError
from .program import FileProgram, describe


def load_package(root: Path, package: str) -> None:
    """Import `root` as the package `package` (so relative imports work)."""
    spec = importlib.util.spec_from_file_location(
        package, root / "__init__.py", submodule_search_locations=[str(root)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    spec.loader.exec_module(module)


def import_generated(files: dict[str, str], runtime: str) -> tuple[str, Any]:
    """Import generated texts as a package and return (package name, importer).

    The texts are written to a temporary folder and every module is imported
    before the folder is removed again, so a build leaves nothing in the
    temporary directory. Their sources stay in `linecache` under the removed
    paths, so tracebacks and `inspect.getsource` still show them.
    """
    tmp = Path(tempfile.mkdtemp(prefix="aotflax-verify-"))
    try:
        (tmp / "__init__.py").write_text("")
        (tmp / "_runtime.py").write_text(runtime)
        for rel, text in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            for parent in path.relative_to(tmp).parents:
                init = tmp / parent / "__init__.py"
                if not init.exists():
                    init.write_text("")
            path.write_text(text)
        package = f"_aotflax_verify_{abs(hash(tmp)) % 10**8}"
        load_package(tmp, package)
        for rel, text in files.items():
            importlib.import_module(f"{package}.{_module_name(rel)}")
            _keep_source(tmp / rel, text)
        _keep_source(tmp / "_runtime.py", runtime)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return package, lambda mod: importlib.import_module(f"{package}.{mod}")


def _keep_source(path: Path, text: str) -> None:
    """Keeps `text` in linecache as the source of `path` (an entry without mtime is never
    checked against the file system, as for sources loaded by an import hook)."""
    linecache.cache[str(path)] = (len(text), None, text.splitlines(keepends=True), str(path))


def _module_name(rel: str) -> str:
    """`sub/foo.py` -> `sub.foo`."""
    return ".".join(Path(rel).with_suffix("").parts)


def verify_module(module: ModuleType, program: FileProgram) -> None:
    """Check every target's init and apply against the resolved shapes."""
    import jax

    for t in program.targets:
        target = module.TARGETS[t.name]
        key = jax.random.key(0)
        # The resolved sizes (symbolic dimensions resolve as sentinel sizes).
        inputs = _arguments(t.arguments, t.inputs, dict(t.trees))
        try:
            params, state = jax.eval_shape(target.init_fn, key,
                                           *(inputs if t.init_inputs else ()))
        except Exception as e:  # initializers are emitted code (user ones interpreted): ours
            raise InternalError(
                f"target {t.name}: JAX failed to trace init: {type(e).__name__}: {e}") from None
        _compare(f"{t.name}: init params", _flat(params), {d.path: (d.shape, d.dtype)
                                                          for d in t.params})
        _compare(f"{t.name}: init state", _flat(state), {d.path: (d.shape, d.dtype)
                                                        for d in t.state})
        args = [target.PARAM_SHAPES, target.STATE_SHAPES, *inputs]
        kwargs = {"rng": key} if t.stochastic else {}
        try:
            outputs, new_state = jax.eval_shape(functools.partial(target.apply_fn, **kwargs), *args)
        except Exception as e:  # JAX rejected code we emitted: our bug
            raise InternalError(f"target {t.name}: JAX failed to trace the emitted code: "
                                f"{type(e).__name__}: {e}") from None
        got = [(tuple(o.shape), str(o.dtype)) for o in jax.tree_util.tree_leaves(outputs)]
        if got != list(t.outputs):
            raise InternalError(
                f"target {t.name}: outputs disagree with resolve",
                dump=f"resolve: {[describe(*o) for o in t.outputs]}\n"
                     f"jax:     {[describe(*o) for o in got]}")
        _compare(f"{t.name}: new_state", _flat(new_state),
                 {d.path: (d.shape, d.dtype) for d in t.state})
        if t.train is not None:
            _verify_train(target, t, key, args, kwargs)


def _verify_train(target: Any, t: Any, key: Any, args: list, kwargs: dict) -> None:
    """Trace the optimizer and the train step: optax checks its own arguments here.

    The front end names optax calls without importing optax (parse and resolve never
    import jax), so a wrong optax argument surfaces here, still before anything is
    written, as a located error at the target.
    """
    import jax

    try:
        opt_state = jax.eval_shape(target.init_opt_fn, target.PARAM_SHAPES)
    except (TypeError, ValueError) as e:
        raise BuildError([Diagnostic(
            "AOT420", f"target {t.name}: its optimizer cannot be built: {e}", t.span,
            hint="check the optax call's arguments against optax's documentation")]) from None
    batch = _arguments(t.train.batch_names, t.train.batch, dict(t.train.trees))
    try:
        jax.eval_shape(functools.partial(target.train_step_fn, **kwargs), args[0], args[1],
                       opt_state, *args[2:], *batch)
    except Exception as e:  # the step is our code around the user's model and loss
        raise InternalError(f"target {t.name}: JAX failed to trace the train step: "
                            f"{type(e).__name__}: {e}") from None


def _arguments(names: tuple[str, ...], leaves: tuple, trees: dict[str, Any]) -> list[Any]:
    """Each input as the resolved program has it: a spec, or a tree of specs (the tree's
    structure holds the labels of its arrays)."""
    import jax

    specs = {label: jax.ShapeDtypeStruct(shape, _dtype(dtype)) for label, shape, dtype in leaves}
    return [jax.tree.map(specs.__getitem__, trees[n]) if n in trees else specs[n]
            for n in names]


def _dtype(name: str) -> Any:
    """A resolved dtype name as JAX takes it (typed keys: the default implementation's)."""
    import jax

    return jax.random.key(0).dtype if name.startswith("key<") else name


def _flat(tree: Any) -> dict[tuple[str, ...], tuple[tuple[int, ...], str]]:
    import jax

    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        key = tuple(str(getattr(p, "key", p)) for p in path)
        out[key] = (tuple(leaf.shape), str(leaf.dtype))
    return out


def _compare(what: str, got: dict, want: dict) -> None:
    if got != want:
        lines = []
        for k in sorted(set(got) | set(want)):
            if got.get(k) != want.get(k):
                lines.append(f"  {'/'.join(k)}: resolve {want.get(k)}, jax {got.get(k)}")
        raise InternalError(f"{what} disagree with resolve", dump="\n".join(lines))
