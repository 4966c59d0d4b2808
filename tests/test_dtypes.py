"""Static dtype promotion (aotflax.dtypes) agrees with JAX's own."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax._src import dtypes as jax_dtypes

from aotflax import dtypes

X32_DTYPES = tuple(d for d in dtypes.ALL_DTYPES if dtypes.canonicalize(d) == d)
SCALARS = st.sampled_from([True, 3, -2, 1.5, 2.0, 1 + 2j])


def abstract(dtype_list: tuple[str, ...]) -> st.SearchStrategy[dtypes.Operand]:
    """A weak or strong abstract dtype from `dtype_list`, or a Python scalar."""
    pairs = st.tuples(st.sampled_from(dtype_list), st.booleans())
    return st.one_of(pairs, SCALARS)


def jax_promotion(operands: list[dtypes.Operand]) -> tuple[tuple, tuple]:
    """JAX's result_type of the operands and dtype of their sum, as (dtype, weak)."""
    arrays = [op for op in operands if isinstance(op, tuple)]
    specs = [jax.ShapeDtypeStruct((2,), jnp.dtype(d), weak_type=w) for d, w in arrays]
    seen: list[tuple] = []

    def f(*traced):
        it = iter(traced)
        args = [next(it) if isinstance(op, tuple) else op for op in operands]
        dtype, weak = jax_dtypes.result_type(*args, return_weak_type_flag=True)
        seen.append((str(np.dtype(dtype)), weak))
        return jnp.add(*args) if len(args) == 2 else jnp.asarray(args[0])

    with jax.numpy_dtype_promotion("standard"):  # the lattice under test
        out = jax.eval_shape(f, *specs)
    return seen[0], (str(out.dtype), out.weak_type)


def check(operands: list[dtypes.Operand], x64: bool) -> None:
    expected_result, expected_sum = jax_promotion(operands)
    assert dtypes.result_type(*operands, x64=x64) == expected_result
    if len(operands) == 2:
        assert dtypes.promote(*operands, x64=x64) == expected_sum
        assert dtypes.binary_op_dtype(*operands, x64=x64) == expected_sum


@settings(max_examples=300, deadline=None)
@given(st.lists(abstract(X32_DTYPES), min_size=1, max_size=3))
def test_promotion_matches_jax_x32(operands: list[dtypes.Operand]) -> None:
    check(operands, x64=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(abstract(dtypes.ALL_DTYPES), min_size=1, max_size=3))
def test_promotion_matches_jax_x64(operands: list[dtypes.Operand]) -> None:
    with jax.enable_x64(True):
        check(operands, x64=True)


def test_every_pair_x32() -> None:
    """Exhaustive over all strong/weak pairs: the lattice is small."""
    ops = [(d, w) for d in X32_DTYPES for w in (False, True)]
    for a in ops:
        for b in ops:
            check([a, b], x64=False)


@given(st.sampled_from(dtypes.ALL_DTYPES), st.lists(SCALARS, max_size=2))
@settings(max_examples=50, deadline=None)
def test_64bit_operands_canonicalize_without_x64(dtype: str, scalars: list) -> None:
    """A 64-bit dtype without x64 behaves like its canonical 32-bit sibling."""
    canonical = dtypes.canonicalize(dtype)
    assert dtypes.result_type((dtype, False), *scalars) == dtypes.result_type(
        (canonical, False), *scalars
    )


@pytest.mark.parametrize("dtype", dtypes.ALL_DTYPES)
def test_canonicalize_matches_jax(dtype: str) -> None:
    assert dtypes.canonicalize(dtype) == str(jax_dtypes.canonicalize_dtype(np.dtype(dtype)))
    assert dtypes.canonicalize(dtype, x64=True) == dtype


@pytest.mark.parametrize("dtype", dtypes.ALL_DTYPES)
def test_predicates_and_sizes_match_numpy(dtype: str) -> None:
    np_dtype = jnp.dtype(dtype)
    assert dtypes.itemsize(dtype) == np_dtype.itemsize
    assert dtypes.is_bool(dtype) == (np_dtype == np.bool_)
    assert dtypes.is_integer(dtype) == jnp.issubdtype(np_dtype, jnp.integer)
    assert dtypes.is_signed(dtype) == jnp.issubdtype(np_dtype, jnp.signedinteger)
    assert dtypes.is_unsigned(dtype) == jnp.issubdtype(np_dtype, jnp.unsignedinteger)
    assert dtypes.is_floating(dtype) == jnp.issubdtype(np_dtype, jnp.floating)
    assert dtypes.is_complex(dtype) == jnp.issubdtype(np_dtype, jnp.complexfloating)
    assert dtypes.is_inexact(dtype) == jnp.issubdtype(np_dtype, jnp.inexact)


@pytest.mark.parametrize("dtype", dtypes.ALL_DTYPES)
def test_short_names_round_trip_and_match_jaxprs(dtype: str) -> None:
    short = dtypes.short_name(dtype)
    assert dtypes.from_short_name(short) == dtype
    assert short == jax_dtypes.short_dtype_name(np.dtype(dtype))


def test_examples() -> None:
    assert dtypes.short_name("float32") == "f32"
    assert dtypes.result_type(("bfloat16", False), ("float16", False)) == (
        "float32",
        False,
    )
    assert dtypes.result_type(("uint8", False), ("int8", False)) == ("int16", False)
    assert dtypes.result_type(("int32", False), 1.0) == ("float32", True)
    assert dtypes.result_type(("bfloat16", False), 2.0) == ("bfloat16", False)
    assert dtypes.result_type(1, 2.0) == ("float32", True)
    assert dtypes.result_type(1, 2.0, x64=True) == ("float64", True)
    assert dtypes.promote(("bfloat16", True), 1) == ("bfloat16", True)
    assert dtypes.result_type(("bfloat16", True), 1) == ("float32", True)


def test_errors() -> None:
    with pytest.raises(ValueError, match="unknown dtype"):
        dtypes.result_type(("float8", False))
    with pytest.raises(ValueError, match="at least one"):
        dtypes.result_type()
    with pytest.raises(ValueError, match="unknown short"):
        dtypes.from_short_name("q7")
    with pytest.raises(TypeError):
        dtypes.result_type("float32")  # type: ignore[arg-type]
