"""Messages speak the model's language: no internal class names, hints for Linen habits.

Every kind of build-time value has a description in the model's own words
(`describe_value`); a test fails when a value class is added without one.  Linen
habits (`nn.Dense(features=16)(x)`, `self.param(name, init, shape)`) get a "did you
mean".  An error inside a module or function says where it was called from.
"""

from __future__ import annotations

import dataclasses
import inspect

import jax
from helpers import build, build_errors

from aotflax import values
from aotflax.diagnostics import SourceFile, Span
from aotflax.resolve.base import Sequential
from aotflax.scopes import FunctionState, Scope, StateVariable

SPAN = Span(SourceFile("m.py", "x\n"), 1, 0, 1, 1)
#: Class names that are also the DSL's own words.
USER_FACING = {"Traversal", "MultiOptimizer", "Sequential"}  # their DSL spellings


def _instance(cls: type) -> object:
    """An instance of a value class with placeholder fields."""
    args = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            continue
        layer = values.Namespace("Dense", {})
        args.append({"span": SPAN, "shape": (2,), "axes": (("data", 2),), "groups": (),
                     "module": layer, "ref": values.ModuleRef(layer)}.get(f.name, "x"))
    return cls(*args)


def _value_classes() -> list[type]:
    return [c for _, c in inspect.getmembers(values, inspect.isclass)
            if c.__module__ == values.__name__ and dataclasses.is_dataclass(c)]


def test_every_value_has_a_description_without_internal_names() -> None:
    scope = Scope(FunctionState(), (), "Net")
    samples = [_instance(c) for c in _value_classes()]
    samples += [scope, StateVariable(scope, "state", "count", (), "int32", SPAN),
                Sequential(()), values.SelfValue(scope)]
    for value in samples:
        text = values.describe_value(value)
        name = type(value).__name__
        assert name in USER_FACING or name not in text, (name, text)
        assert text and "object at 0x" not in text, (name, text)


def test_linen_style_layer_call_gets_a_did_you_mean() -> None:
    out = build_errors("""
    class Net(nn.Module):
        def apply(self, x):
            return nn.Dense(features=16)(x)

    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    assert "called without its input" in out and "nn.Dense(x, features=" in out, out
    assert "Linen" in out


def test_linen_argument_order_of_self_param_gets_a_did_you_mean() -> None:
    out = build_errors("""
    class Net(nn.Module):
        def apply(self, x):
            return x * self.param("w", nn.initializers.ones, (3,))

    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    assert "did you mean self.param(name, shape, initializer)" in out, out


def test_an_error_in_a_module_names_the_call_site() -> None:
    out = build_errors("""
    class Block(nn.Module):
        def apply(self, x):
            return nn.Dense(x, undefined_width)

    class Net(nn.Module):
        def apply(self, x):
            return Block(x, name="block")

    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    assert "name 'undefined_width' is not defined" in out
    assert "note: in Block, called here" in out and 'Block(x, name="block")' in out, out


def test_a_method_passed_as_a_hyperparameter_is_a_located_error() -> None:
    out = build_errors("""
    class Block(nn.Module):
        def apply(self, x, act=None):
            return act(x)

    class Net(nn.Module):
        def apply(self, x):
            return Block(x, act=self.helper)

        def helper(self, x):
            return x

    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    assert "error[AOT353]" in out and "internal error" not in out, out


def test_a_failed_if_poisons_only_the_names_it_would_introduce() -> None:
    out = build_errors("""
    class Net(nn.Module):
        def apply(self, x):
            if jnp.sum(x) > 0:
                x = nn.relu(x)
                y = x
            z = y + 1.0
            a, b, c = x
            return z

    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    assert "conditions must be static" in out
    assert "'y' is not defined" not in out  # a knock-on of the failed `if`: silenced
    assert "cannot unpack f32[2, 3] into 3 names" in out  # x still has a value: its own mistake


def test_an_array_where_a_rule_needs_static_values_is_named_as_an_array() -> None:
    errors = build_errors("""
    class Net(nn.Module):
        def apply(self, x):
            return x.reshape(jnp.array((2, 4)))

    aot.target("net", Net, x=aot.f32[2, 4])
    """)
    assert "error[AOT203]: x.reshape: needs values known at build time here, got an array " \
        "i32[2]" in errors, errors
    assert "Tensor" not in errors and "hint: write a tuple of ints" in errors


def test_a_failed_append_leaves_no_knock_on_errors() -> None:
    """PixelCNN++ keeps a stack of activations: when one pushed value failed, the pops
    that follow must not report an empty list (the root cause alone is reported)."""
    out = build_errors("""
    class Net(nn.Module):
        def apply(self, x):
            stack = []
            stack.append(jnp.mean(x, (0.5,)))
            stack.append(x)
            a = stack.pop()
            b = stack.pop()
            return a + b

    aot.target("net", Net, x=aot.f32[2, 4])
    """)
    assert "an axis must be an int, got 0.5" in out
    assert "pop from empty list" not in out and out.count("error[") == 1


def test_a_scan_step_that_failed_leaves_no_knock_on_errors() -> None:
    """A step whose result failed (here from a value that failed before the scan, in
    the carry and in the returned tuple) is reported once, where it failed: not again
    as "a scan step must return (new_carry, y)" or as a carry that is not an array."""
    for ret in ("c + bad, c", "c, c + bad", "(c + bad, c)"):
        out = build_errors(f"""
        class Net(nn.Module):
            def apply(self, x):
                bad = jnp.frobnicate(x)

                def body(c, i):
                    return {ret}

                _, ys = jax.lax.scan(body, x, jnp.arange(3))
                return ys

        aot.target("net", Net, x=aot.f32[2])
        """)
        assert "jnp.frobnicate is not supported" in out
        assert out.count("error[") == 1, out


def test_an_array_as_an_initializer_argument_names_the_argument_and_the_fix() -> None:
    """Dopamine's networks write `variance_scaling(scale=1.0 / jnp.sqrt(3.0), ...)`: the
    error names the argument and the array, and its hint offers what the build takes
    (math or numpy on numbers); the hinted spelling builds."""
    model = """
    import math
    class Net(nn.Module):
        def apply(self, x):
            init = jax.nn.initializers.variance_scaling(
                scale=1.0 / {scale}, mode='fan_in', distribution='uniform')
            return nn.Dense(x, 3, kernel_init=init)

    aot.target("net", Net, x=aot.f32[2, 4])
    """
    out = build_errors(model.format(scale="jnp.sqrt(3.0)"))
    assert "variance_scaling: scale must be known at build time, got array f32[]" in out
    assert "math.sqrt(3.0)" in out and out.count("error[") == 1
    build(model.format(scale="math.sqrt(3.0)"))


def test_an_absl_flag_says_how_it_is_used_and_why_it_is_unknown() -> None:
    """sam_jax's WideResnet tests `FLAGS.use_additional_skip_connections` inside apply:
    the error says the flag is tested (not "passed"), and that a flag's value comes from
    the command line of a program the build never runs.  Another library keeps the
    general reason; a loop over one says it is looped over."""
    out = build_errors("""
    from absl import flags
    import tensorflow as tf
    FLAGS = flags.FLAGS
    flags.DEFINE_bool('extra', False, 'an extra skip connection')

    class Net(nn.Module):
        def apply(self, x):
            if FLAGS.extra:
                x = x + 1.0
            for t in tf.sizes:
                x = x * 2.0
            return x

    aot.target("net", Net, x=aot.f32[2, 4])
    """)
    assert "'flags.FLAGS.extra' cannot be tested here: absl flags are set on the command " \
        "line of the program that runs the model" in out, out
    assert "'tf.sizes' cannot be looped over here: 'tensorflow' is not a module aotflax " \
        "interprets" in out, out
    assert "'flags.FLAGS.extra' cannot be passed here" not in out


def test_a_class_deriving_from_object_is_a_class_like_any_other() -> None:
    """`class C(object):` is `class C:` in Python 3 (sam_jax's EfficientNet configs): a
    plain class of settings, a dataclass and a module written so build (no "'object' is
    not available"), and a class deriving from a library's class is reported by its base."""
    m = build("""
    class Cfg(object):
        def __init__(self, width=4):
            self.width = width

    class Net(nn.Module):
        def apply(self, x, cfg=Cfg()):
            return nn.Dense(x, cfg.width)

    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    params, _ = m.TARGETS["net"].init(jax.random.key(0))
    assert params["Dense_0"]["kernel"].shape == (3, 4)
    out = build_errors("""
    import tensorflow as tf

    class Cfg(tf.Module):
        pass

    class Net(nn.Module):
        def apply(self, x, cfg=Cfg()):
            return x

    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    assert "error[AOT320]: class Cfg derives from" in out and "tf.Module" in out, out
    assert "'object'" not in out
    m = build("""
    import dataclasses

    @dataclasses.dataclass
    class Cfg(object):
        width: int = 4

    class Net(nn.Module, object):
        def apply(self, x, cfg=Cfg()):
            return nn.Dense(x, cfg.width)

    aot.target("net", Net, x=aot.f32[2, 3])
    """)
    params, _ = m.TARGETS["net"].init(jax.random.key(0))
    assert params["Dense_0"]["kernel"].shape == (3, 4)


def test_the_source_line_shown_is_pythons_line_despite_form_feeds() -> None:
    """Python ends lines only at \\n, \\r\\n and \\r: a form feed (old GNU-style page
    breaks) or a U+2028 in a comment is a character of its line, so the line shown under
    an error must not be one the splitting shifted."""
    out = build_errors("class Net(nn.Module):\n\x0c\n    # a comment \u2028 with a line separator\n"
                       "    def apply(self, x):\n        return nn.Dense(x, 'a')\n\n\n"
                       "aot.target('net', Net, x=aot.f32[2, 3])\n")
    assert "return nn.Dense(x, 'a')\n" in out
    assert "aot.target('net', Net, x=aot.f32[2, 3])\n" in out
