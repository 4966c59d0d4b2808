"""Serving: buckets, the padding proof, symbolic INPUTS, jit-like inputs, the fast call.

A bucketed target is built through the real pipeline, its executables compiled
into a temporary folder and loaded back; every call is compared with the
generated `apply` at the request's own size, and `jax.monitoring` counts the
compiles a call triggers (none may).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any, Iterator

import jax
import numpy as np
import pytest
from helpers import HEADER, build, build_errors, emit

from aotflax import artifacts
from aotflax.compile import compile_target
from aotflax.driver import main
from aotflax.ops import REGISTRY
from aotflax.ops import axes as axis_rules
from aotflax.ops.registry import qualname
from aotflax.program import Mix

MLP = """
class MLP(nn.Module):
    def apply(self, x, scale):
        x = x.reshape((x.shape[0], -1))
        h = nn.relu(nn.Dense(x, 16))
        return nn.log_softmax(nn.Dense(h, 5)) * scale, h[:, :3]

aot.target("mlp", MLP, x=aot.f32["batch", 2, 3], scale=aot.f32[()],
           buckets={"batch": (1, 8, 32)})
aot.target("mlp_sym", MLP, x=aot.f32["batch", 2, 3], scale=aot.f32[()])
"""


@contextlib.contextmanager
def compiles() -> Iterator[list[str]]:
    """The names of the compile events jax records inside the block."""
    seen: list[str] = []

    def listen(name: str, seconds: float, **kwargs: Any) -> None:
        if "compile" in name:
            seen.append(name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


def compiled(module: Any, name: str, tmp: Path) -> Any:
    target = module.TARGETS[name]
    compile_target(target, tmp / "artifacts")
    return target


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> Any:
    module = build(MLP)
    tmp = tmp_path_factory.mktemp("serving")
    target = compiled(module, "mlp", tmp)
    return module, target, target.load(artifact_dir=tmp / "artifacts"), tmp


def test_bucket_dispatch_equals_apply_at_every_size_without_compiling(mlp: Any) -> None:
    _, target, run, _ = mlp
    params, state = target.init(jax.random.key(0))
    x = np.random.default_rng(0).standard_normal((80, 2, 3)).astype(np.float32)
    scale = np.float32(0.5)
    apply = jax.jit(target.apply)
    expected = {n: apply(params, state, x[:n], scale) for n in
                (1, 3, 8, 9, 32, 33, 80)}  # 80: three calls of the largest bucket
    jax.block_until_ready(expected)
    with compiles() as seen:
        for n, (want, _) in expected.items():
            (y, h), new_state = run(params, state, x[:n], scale)
            assert y.shape == (n, 5) and h.shape == (n, 3) and new_state == {}
            np.testing.assert_allclose(np.asarray(y), np.asarray(want[0]), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(np.asarray(h), np.asarray(want[1]), rtol=1e-5, atol=1e-6)
    assert seen == [], f"a loaded call compiled: {seen}"
    assert run.kind == "executable" and run.buckets == {"batch": (1, 8, 32)}


def test_manifest_and_target_record_the_buckets(mlp: Any) -> None:
    _, target, run, tmp = mlp
    assert target.buckets == {"batch": (1, 8, 32)} and target.splittable == ("batch",)
    manifest = run.manifest
    assert manifest["buckets"] == {"batch": [1, 8, 32]}
    sizes = sorted(e["bucket"]["batch"] for e in manifest["executables"].values())
    assert sizes == [1, 8, 32]
    folder = artifacts.target_folder(tmp / "artifacts", target.module, target.name)
    assert all((folder / e["file"]).is_file() for e in manifest["executables"].values())


def test_inputs_are_symbolic_not_a_made_up_size(mlp: Any) -> None:
    _, target, _, _ = mlp
    x, scale = target.INPUTS["x"], target.INPUTS["scale"]
    assert str(x.shape[0]) == "batch" and x.shape[1:] == (2, 3) and scale.shape == ()
    assert not isinstance(x.shape[0], int)
    # INPUTS trace like any symbolic spec: one "batch" symbol across the target
    out = jax.eval_shape(target.apply_fn, target.PARAM_SHAPES, target.STATE_SHAPES,
                         *target.INPUTS.values())
    assert str(out[0][0].shape[0]) == "batch"


def test_loaded_call_takes_what_jit_takes_and_names_what_it_refuses(mlp: Any) -> None:
    _, target, run, _ = mlp
    params, state = target.init(jax.random.key(0))
    x = np.linspace(-1, 1, 8 * 6).reshape(8, 2, 3)  # float64, as numpy makes it
    want = jax.jit(target.apply)(params, state, x, 2.0)
    assert jax.jit(target.apply)(params, state, x, 2)[0][0].dtype == np.float32  # weak int
    for got in (run(params, state, x, 2.0), run(params, state, x.astype(np.float32), 2)):
        np.testing.assert_allclose(np.asarray(got[0][0]), np.asarray(want[0][0]), rtol=1e-6)
    with pytest.raises(ValueError, match=r"input 'x' expected float32\[batch, 2, 3\], got "
                       r"float32\[8, 3, 3\] \(wrong shape\)"):
        run(params, state, np.zeros((8, 3, 3), np.float32), 1.0)
    with pytest.raises(TypeError, match=r"input 'x' expected float32\[batch, 2, 3\], got "
                       r"int32\[8, 2, 3\] \(wrong dtype\)"):
        run(params, state, np.zeros((8, 2, 3), np.int32), 1.0)
    with pytest.raises(TypeError, match=r"input 'x' expected float32\[batch, 2, 3\], got a "
                       r"Python float"):
        run(params, state, 1.0, 1.0)
    with pytest.raises(TypeError, match=r"missing params\['Dense_1'\]"):
        run({"Dense_0": params["Dense_0"]}, state, x, 1.0)


def test_apply_checks_shapes_like_load(mlp: Any) -> None:
    module, target, _, _ = mlp
    params, state = target.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"mlp_sym: input 'x' expected float32\[batch, 2, 3\], "
                       r"got float32\[4, 6\]"):
        module.mlp_sym.apply(params, state, np.zeros((4, 6), np.float32), 1.0)


def test_exact_bucket_calls_skip_python_checks(mlp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks that cannot change between calls ran in load(); a seen signature goes
    through jax's C++ dispatch and never back into the runtime's argument checks."""
    _, target, run, _ = mlp
    runtime = __import__(type(run).__module__, fromlist=["_check_call"])
    params, state = target.init(jax.random.key(0))
    x = np.zeros((8, 2, 3), np.float32)
    scale = np.float32(1)
    run(params, state, x, scale)
    calls = []
    original = runtime._check_call
    monkeypatch.setattr(runtime, "_check_call", lambda *a: calls.append(a) or original(*a))
    for _ in range(5):
        run(params, state, x, scale)
    assert calls == []
    run(params, state, np.zeros((8, 2, 3), np.int8).astype(np.float32) + 1, scale)
    assert calls == []  # same signature, new values: still the fast path
    with pytest.raises(ValueError):
        run(params, state, np.zeros((8, 2, 4), np.float32), scale)
    assert len(calls) == 1  # a new signature comes back to our checks


def test_a_bucketed_load_is_one_cpp_dispatcher_over_its_buckets(
        mlp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls at a bucket's exact size run as a jit call runs (no Python frame of ours);
    only a call between buckets reaches the Python dispatch that pads."""
    _, target, run, _ = mlp
    runtime = __import__(type(run).__module__, fromlist=["_Bucketed"])
    assert "PjitFunction" in type(type(run).__dict__["__call__"].__func__).__name__
    params, state = target.init(jax.random.key(0))
    scale = np.float32(1)
    for n in (1, 8, 32):
        run(params, state, np.zeros((n, 2, 3), np.float32), scale)
    padded = []
    original = runtime._Bucketed.__call__
    monkeypatch.setattr(runtime._Bucketed, "__call__",
                        lambda *a, **k: padded.append(a[3].shape) or original(*a, **k))
    for n in (1, 8, 32, 1):
        run(params, state, np.ones((n, 2, 3), np.float32), scale)
    assert padded == []
    (y, _), _ = run(params, state, np.ones((3, 2, 3), np.float32), scale)
    assert padded == [(3, 2, 3)] and y.shape == (3, 5)
    with pytest.raises(TypeError, match=r"^mlp: unexpected keyword argument 'seed'$"):
        run(params, state, np.ones((8, 2, 3), np.float32), scale, seed=1)


def test_a_fixed_target_loads_onto_the_fast_path(tmp_path: Path) -> None:
    module = build("""
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 3)

    aot.target("net", Net, x=aot.f32[2, 4])
    """)
    target = compiled(module, "net", tmp_path)
    run = target.load(artifact_dir=tmp_path / "artifacts")
    assert "PjitFunction" in type(type(run).__dict__["__call__"].__func__).__name__
    params, state = target.init(jax.random.key(0))
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(np.asarray(run(params, state, x)[0]),
                               np.asarray(target.apply(params, state, x)[0]), rtol=1e-6)
    with pytest.raises(ValueError, match=r"input 'x' expected float32\[2, 4\], got float32\[3, 4\]"):
        run(params, state, np.ones((3, 4), np.float32))


# --- the padding proof -----------------------------------------------------------------


@pytest.mark.parametrize("body, op", [
    ("x = nn.BatchNorm(x, use_running_average=False)", "nn.BatchNorm"),
    ("x = x - jnp.mean(x, axis=0)", "jnp.mean"),
    ("x = x.reshape((-1,))", "x.reshape"),
    ("x = jnp.cumsum(x, axis=0)", "jnp.cumsum"),
    ("x = x[1:]", "this indexing"),
    ("x = x.T @ x", "this operator"),
    ("x = x / x.shape[0]", "this operator"),
    ("x = jax.lax.pad(x, 0.0, ((1, 0, 0), (0, 0, 0)))", "lax.pad"),
    ("x = jax.lax.dynamic_slice_in_dim(x, 0, 1, axis=0)", "lax.dynamic_slice_in_dim"),
    ("x = x.at[-1].set(0.0)", "x.at[...].set"),
    ("x = jax.random.permutation(jax.random.key(0), x)", "jax.random.permutation"),
])
def test_a_row_mixing_target_is_a_located_error_naming_the_op(body: str, op: str) -> None:
    errors = build_errors(f"""
    class Net(nn.Module):
        def apply(self, x):
            x = nn.Dense(x, 4)
            {body}
            return x

    aot.target("net", Net, x=aot.f32["batch", 4], buckets={{"batch": (1, 8)}})
    """)
    first = errors.splitlines()[0]
    assert "error[AOT413]" in first and f"{op} mixes positions along bucketed dimension " \
        "'batch'" in first, errors
    assert ":9:" in first  # the line of the op, in the model file
    assert "note: padding fills the positions past a request with zeros" in errors


@pytest.mark.parametrize("line, op", [
    ("y = jax.vmap(lambda col: jnp.sum(col), in_axes=1)(x)", "jnp.sum"),
    ("y = jax.checkpoint(lambda v: v - v.mean(0))(x)", "x.mean"),
    ("y, _ = jax.jvp(lambda v: jnp.cumsum(v, axis=0), (x,), (x,))", "jnp.cumsum"),
])
def test_a_transformed_function_that_mixes_the_batch_is_refused(line: str, op: str) -> None:
    """vmap, checkpoint and jvp bodies are proved like any code: a sum over the batch in
    one (a vmap over the feature axis) would let padded rows change the real ones."""
    errors = build_errors(f"""
    class Net(nn.Module):
        def apply(self, x):
            x = nn.Dense(x, 4) + 1.0
            {line}
            return x + y

    aot.target("net", Net, x=aot.f32["batch", 4], buckets={{"batch": (1, 8)}})
    """)
    first = errors.splitlines()[0]
    assert "error[AOT413]" in first and f"{op} mixes positions along bucketed dimension " \
        "'batch'" in first, errors
    assert ":9:" in first  # the line of the lambda, in the model file


def test_a_module_applied_with_given_parameters_is_proved_too() -> None:
    """`M.call(params, x)` runs M's own function: its body is checked as a call's is."""
    errors = build_errors("""
    class Center(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4) - jnp.mean(x, axis=0)

    class Net(nn.Module):
        def apply(self, x):
            k = self.param("k", (4, 4), nn.initializers.lecun_normal())
            return Center.call({"Dense_0": {"kernel": k, "bias": jnp.zeros(4)}}, x)

    aot.target("net", Net, x=aot.f32["batch", 4], buckets={"batch": (1, 8)})
    """)
    first = errors.splitlines()[0]
    assert "error[AOT413]" in first and "jnp.mean mixes positions along bucketed " \
        "dimension 'batch'" in first and ":8:" in first, errors
    assert "in Center, called here" in errors


def test_a_vmap_over_the_batch_is_bucketed(tmp_path: Path) -> None:
    """Mapped over the bucketed axis, a vmapped function sees one row at a time: the target
    is bucketed, and a padded request gives the unpadded answer."""
    module = build("""
    class Net(nn.Module):
        def apply(self, x):
            x = nn.Dense(x, 4) + 1.0
            y = jax.vmap(lambda row: row / jnp.sum(row), in_axes=0)(x)
            return jax.checkpoint(lambda v: jnp.tanh(v) * 2.0)(y)

    aot.target("net", Net, x=aot.f32["batch", 4], buckets={"batch": (1, 8)})
    """)
    target = compiled(module, "net", tmp_path)
    run = target.load(artifact_dir=tmp_path / "artifacts")
    params, state = target.init(jax.random.key(0))
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)  # padded to 8
    want, _ = target.apply(params, state, x)
    got, _ = run(params, state, x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)


def test_lax_slicing_updates_and_special_functions_keep_other_axes(tmp_path: Path) -> None:
    """Axis rules of lax slicing, pads, x.at updates: along another axis they are safe."""
    module = build("""
    class Net(nn.Module):
        def apply(self, x):
            x = nn.Dense(x, 4)
            x = jax.lax.slice_in_dim(x, 0, 2, axis=1) + jax.lax.dynamic_slice_in_dim(x, 1, 2, 1)
            x = jax.scipy.special.erf(x.at[:, 0].set(1.0))
            x = jax.lax.pad(x, 0.0, ((0, 0, 0), (1, 1, 0)))
            return jax.lax.dynamic_update_slice(x, x * 2.0, (0, 0))

    aot.target("net", Net, x=aot.f32["batch", 4], buckets={"batch": (1, 8)})
    """)
    target = compiled(module, "net", tmp_path)
    run = target.load(artifact_dir=tmp_path / "artifacts")
    params, state = target.init(jax.random.key(0))
    x = np.linspace(-1, 1, 20, dtype=np.float32).reshape(5, 4)  # padded to 8
    want, _ = target.apply(params, state, x)
    got, _ = run(params, state, x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)


def test_a_numpy_position_table_is_a_constant_of_a_bucketed_target() -> None:
    """numpy on the host (ops/host.py) builds constants: padding the batch cannot reach them."""
    module = build("""
    import numpy as np

    class Net(nn.Module):
        def apply(self, x):
            pe = np.zeros((6, 4), dtype=np.float32)
            pe[:, 0::2] = np.sin(np.arange(6)[:, np.newaxis] * 0.5)
            return nn.Dense(x, 4) + jnp.asarray(pe)[None]

    aot.target("net", Net, x=aot.f32["batch", 6, 3], buckets={"batch": (1, 8)})
    """)
    assert module.net.buckets == {"batch": (1, 8)} and module.net.splittable == ("batch",)


def test_a_mixing_op_inside_a_submodule_names_the_call_site() -> None:
    errors = build_errors("""
    class Norm(nn.Module):
        def apply(self, x):
            return x - x.mean(axis=0)

    class Net(nn.Module):
        def apply(self, x):
            return Norm(nn.Dense(x, 4))

    aot.target("net", Net, x=aot.f32["batch", 4], buckets={"batch": (1, 8)})
    """)
    assert "x.mean mixes positions along bucketed dimension 'batch'" in errors
    assert "note: in Norm, called here" in errors


def test_bucket_declarations_are_checked() -> None:
    base = """
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(x, 4)

    aot.target("net", Net, x=aot.f32[{dims}], {kw})
    """
    cases = {
        ('"batch", 4', 'buckets={"rows": (1, 2)}'): "no input of target 'net' has",
        ('"batch", "n"', 'buckets={"batch": (1, 2)}'): "'n' of target 'net' has no buckets",
        ('"batch", 4', 'buckets={"batch": (0, 2)}'): "must be positive ints",
        ('"batch", 4', 'buckets={"batch": (2, 2)}'): "repeat a size",
        ('"batch", 4', 'pad_value={"x": 1}'): "only applies to a target with buckets=",
        ('"batch", 4', 'buckets={"batch": (1,)}, masks={"batch": "y"}'): "no input 'y'",
    }
    for (dims, kw), message in cases.items():
        errors = build_errors(base.format(dims=dims, kw=kw))
        assert message in errors and ("AOT412" in errors or "AOT414" in errors), errors


def test_padding_rules_cover_every_operation() -> None:
    missing = [qualname(e) for e in REGISTRY.unique() if qualname(e) not in axis_rules.RULES]
    assert not missing, f"operations without an axis rule in aotflax/ops/axes.py: {missing}"
    assert set(axis_rules.RULES) <= {qualname(e) for e in REGISTRY.unique()} | {
        k for e in REGISTRY.unique() for k in (f"{ns}.{e.name}" for ns in e.namespaces)}


@pytest.mark.parametrize("model", sorted((Path(__file__).parent.parent / "models").glob("*.py")),
                         ids=lambda p: p.stem)
def test_every_zoo_op_has_a_rule_that_applies(model: Path) -> None:
    """No op of the zoo falls back to "no axis rule" (a rule that fails on a real call)."""
    with axis_rules.record_flows():  # as the padding proof resolves
        _, program = emit(model.read_text(), header=False)
    assert any(op.info is not None and op.info.flow is not None
               for fn in program.functions for op in fn.body)

    def walk(fn: Any) -> Iterator[Any]:
        for op in fn.body:
            yield op
            for nested in op.nested:
                yield from walk(nested)

    for fn in program.functions:
        for op in walk(fn):
            flow = op.info.flow if op.info is not None else None
            for _, mapping in (flow.inputs if flow is not None else ()):
                for axis in mapping:
                    assert not (isinstance(axis, Mix) and axis.why == axis_rules.UNKNOWN), (
                        f"{model.name}: {op.info.entry} ({op.template}) at line {op.span.line}")


# --- two bucketed dimensions: a language model -------------------------------------------

LM = """
class Block(nn.Module):
    def apply(self, x, mask=None, causal: bool = True):
        y = nn.SelfAttention(nn.LayerNorm(x), num_heads=2, causal_mask=causal, mask=mask)
        return x + nn.Dense(nn.gelu(nn.Dense(x + y, 16)), x.shape[-1])

class LM(nn.Module):
    def apply(self, tokens):
        x = nn.Embed(tokens, num_embeddings=20, features=8)
        x = x + jnp.take(self.param("pos", (32, 8), nn.initializers.normal(0.02)),
                         jnp.arange(x.shape[1]), axis=0)[None]
        return nn.Dense(Block(x), 20)

class Encoder(nn.Module):
    def apply(self, tokens, mask):
        x = nn.Embed(tokens, num_embeddings=20, features=8)
        x = Block(x, nn.make_attention_mask(mask, mask), causal=False)
        return nn.Dense(x, 3)

aot.target("lm", LM, tokens=aot.i32["batch", "length"],
           buckets={"batch": (1, 4), "length": (4, 16)}, pad_value={"tokens": 1})
aot.target("encoder", Encoder, tokens=aot.i32["batch", "length"],
           mask=aot.bool_["batch", "length"], buckets={"batch": (2,), "length": (8,)},
           masks={"length": "mask"})
"""


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    module = build(LM)
    tmp = tmp_path_factory.mktemp("lm")
    for name in ("lm", "encoder"):
        compiled(module, name, tmp)
    return module, tmp / "artifacts"


def test_two_dimension_buckets_pad_batch_and_length(lm: Any) -> None:
    module, root = lm
    target = module.lm
    assert target.splittable == ("batch",)  # attention runs over the length
    run = target.load(artifact_dir=root)
    assert len(run.manifest["executables"]) == 4
    params, state = target.init(jax.random.key(1))
    tokens = np.random.default_rng(0).integers(0, 20, (9, 16)).astype(np.int32)
    cases = [(3, 5), (4, 16), (9, 7)]  # both padded; exact; 9 rows: three calls of batch 4
    apply = jax.jit(target.apply)
    expected = {c: apply(params, state, tokens[:c[0], :c[1]])[0] for c in cases}
    jax.block_until_ready(expected)
    with compiles() as seen:
        for (b, n), want in expected.items():
            got, _ = run(params, state, tokens[:b, :n])
            assert got.shape == (b, n, 20)
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)
    assert seen == []
    with pytest.raises(ValueError, match=r"'length' is 17, above its largest bucket 16, and a "
                       r"request cannot be split along 'length'"):
        run(params, state, np.zeros((1, 17), np.int32))


def test_a_masked_length_pads_safely(lm: Any) -> None:
    module, root = lm
    target = module.encoder
    run = target.load(artifact_dir=root)
    params, state = target.init(jax.random.key(2))
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 20, (2, 5)).astype(np.int32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
    want, _ = jax.jit(target.apply)(params, state, tokens, mask)
    got, _ = run(params, state, tokens, mask)  # padded to length 8 with masked positions
    # every position the mask keeps is exact; a position it hides attends to no key at
    # all (a uniform average over every key), as unspecified padded as it is unpadded
    np.testing.assert_allclose(np.asarray(got)[mask], np.asarray(want)[mask], rtol=1e-4,
                               atol=1e-5)


def test_attention_without_a_mask_over_a_padded_length_is_an_error() -> None:
    modules = LM.split('aot.target("lm"')[0]
    errors = build_errors(modules + """
aot.target("encoder", Encoder, tokens=aot.i32["batch", "length"],
           mask=aot.bool_["batch", "length"], buckets={"batch": (2,), "length": (8,)})
""")
    assert "error[AOT413]" in errors and "nn.SelfAttention mixes positions along bucketed " \
        "dimension 'length'" in errors
    assert 'masks={"length": "mask"}' in errors  # the hint says how to declare the mask


# --- method targets ----------------------------------------------------------------------


def test_a_method_target_takes_and_loads_the_whole_tree(tmp_path: Path) -> None:
    module = build("""
    class VAE(nn.Module):
        def apply(self, x):
            return self.generate(nn.Dense(x, 4, name="encoder"))

        @nn.module_method
        def generate(self, z):
            return nn.sigmoid(nn.Dense(nn.relu(nn.Dense(z, 8, name="hidden")), 6, name="out"))

    aot.target("vae", VAE, x=aot.f32[2, 6])
    aot.target("generate", VAE, z=aot.f32[3, 4], method="generate")
    """)
    generate = module.generate
    assert jax.tree.structure(generate.PARAM_SHAPES) == jax.tree.structure(
        module.vae.PARAM_SHAPES)
    assert "encoder" in generate.PARAM_SHAPES
    params, state = module.vae.init(jax.random.key(0))  # the whole tree, as Linen's init
    z = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    want, _ = generate.apply(params, state, z)
    compile_target(generate, tmp_path / "artifacts")
    got, _ = generate.load(artifact_dir=tmp_path / "artifacts")(params, state, z)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
    hidden = jax.nn.relu(z @ params["hidden"]["kernel"] + params["hidden"]["bias"][None])
    np.testing.assert_allclose(np.asarray(want), np.asarray(jax.nn.sigmoid(
        hidden @ params["out"]["kernel"] + params["out"]["bias"][None])), rtol=1e-5)


# --- the command line -------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, tuple[int, str | None]]:
    # the folder itself is left out: the build's lock file (outdir.LOCK_NAME) comes and
    # goes in it, which moves its mtime; every file and subfolder under it is compared
    return {str(p): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()
                     if p.is_file() else None) for p in sorted(root.rglob("*"))}


def test_a_noop_rebuild_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "serve.py").write_text(HEADER + MLP.replace(
        'aot.target("mlp_sym"', '# aot.target("mlp_sym"'))
    out = tmp_path / "generated"
    assert main([str(models), "-o", str(out)]) == 0
    table = capsys.readouterr().out
    assert "cpu (batch 1, 8, 32)" in table  # the build's table lists the buckets
    before = _snapshot(out)
    os.utime(models / "serve.py")  # touched, not changed
    assert main([str(models), "-o", str(out)]) == 0
    assert _snapshot(out) == before
