"""Plain Python classes of the model files, as 2020 research code wrote them.

Performer's fast attention builds its attention function from objects: an abstract base
(`__metaclass__ = abc.ABCMeta`, `@abc.abstractmethod`), subclasses whose `__init__` sets
attributes and draws a random matrix, and a bound method handed to `nn.SelfAttention`.
Config holders of the time were plain classes too.  The build interprets them as objects
of attributes: `__init__` runs on a new object, methods see `self`, `super()` and
`super(Cls, self)` reach the bases, properties and static methods work, and an object is
equal only to itself.  Each model here is our own, checked against numpy.
"""

from __future__ import annotations

import jax
import numpy as np
from helpers import HEADER, build, build_errors, scratch_folder

from aotflax.diagnostics import BuildError
from aotflax.driver import front_end

OBJECTS = """
import abc
import functools


class Feature(object):
    __metaclass__ = abc.ABCMeta
    OFFSET = 1.0

    @abc.abstractmethod
    def features(self, x):
        raise NotImplementedError("abstract")

    def __call__(self, x):
        return self.features(x) + self.OFFSET


class Tanh(Feature):
    def __init__(self, scale, power=1):
        super(Tanh, self).__init__()
        self.scale = scale
        self.power = power
        self.calls = 0

    def features(self, x):
        self.calls += 1
        return self.scale * jnp.tanh(x) ** self.power

    @property
    def doubled(self):
        return 2 * self.scale

    @staticmethod
    def width(n):
        return n * 2

    @classmethod
    def unused(cls):
        return cls


class Shifted(Tanh, abc.ABC):
    def __init__(self, scale, shift):
        super().__init__(scale, power=2)
        self.shift = shift

    def features(self, x):
        return super().features(x) - self.shift


def make(kind, scale):
    cls = functools.partial(Shifted, shift=0.5) if kind == "shifted" else Tanh
    return cls(scale)


class M(nn.Module):
    def apply(self, x, kind="shifted"):
        s = Tanh(3.0)
        y = nn.Dense(x, Tanh.width(2))
        y = s.features(y) * s.doubled
        f = make(kind, 0.5)
        assert s.calls == 1 and isinstance(f, Feature) and isinstance(s, Tanh)
        assert s == s and Tanh(3.0) != s and not isinstance(s, Shifted)
        return f(y)

aot.target("shifted", M, x=aot.f32[2, 3])
aot.target("tanh", M.partial(kind="tanh"), x=aot.f32[2, 3])
"""


def test_objects_of_plain_classes_compute_as_python_would() -> None:
    m = build(OBJECTS)
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    for name, f in (("shifted", lambda y: 0.5 * np.tanh(y) ** 2 - 0.5 + 1.0),
                    ("tanh", lambda y: 0.5 * np.tanh(y) + 1.0)):
        t = m.TARGETS[name]
        params, _ = t.init(jax.random.key(0))
        d = params["Dense_0"]
        assert np.asarray(d["kernel"]).shape == (3, 4)  # Tanh.width(2)
        y = x @ np.asarray(d["kernel"]) + np.asarray(d["bias"])
        y = 3.0 * np.tanh(y) * 6.0
        got, _ = t.apply(params, {}, x)
        np.testing.assert_allclose(got, f(y), rtol=1e-5, atol=1e-5)


def test_a_base_in_another_file_keeps_its_own_globals() -> None:
    """An inherited method reads the names of the file that defines it."""
    folder = scratch_folder()
    (folder / "base.py").write_text(HEADER + """
SCALE = 3.0


class Base:
    def __init__(self, width):
        self.width = width

    def scaled(self, x):
        return SCALE * x
""")
    (folder / "net.py").write_text(HEADER + """
from base import Base

SCALE = 100.0


class Child(Base):
    def __init__(self):
        super().__init__(width=5)


class Net(nn.Module):
    def apply(self, x):
        c = Child()
        return c.scaled(nn.Dense(x, c.width))

aot.target("net", Net, x=aot.f32[2, 3])
""")
    report = front_end([folder / "base.py", folder / "net.py"], folder)
    if report.diagnostics:
        raise BuildError(report.diagnostics)
    text = next(f.text for f in report.files if f.module == "net")
    assert "3.0 * " in text and "100.0" not in text and "f32[2, 5]" in text


def test_what_plain_classes_do_not_take_is_located() -> None:
    out = build_errors("""
    class Helper:
        @classmethod
        def make(cls):
            return cls()

    class M(nn.Module):
        def apply(self, x):
            return x * Helper().make()

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    assert "error[AOT325]: method make of Helper: only @property, @staticmethod and " \
        "@abc.abstractmethod are supported" in out and "decorated here" in out, out
    out = build_errors("""
    class NotAModule:
        def apply(self, x):
            return x

    class M(nn.Module):
        def apply(self, x):
            return NotAModule(x)

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    as_target = build_errors("""
    class NotAModule:
        def apply(self, x):
            return x

    aot.target("u", NotAModule, x=aot.f32[2, 3])
    """)
    for text, use in ((out, "return NotAModule(x)"), (as_target, 'aot.target("u"')):
        assert "error[AOT320]: class NotAModule is a plain Python class, not a module" in text
        assert "derive it from nn.Module" in text and "used as a module here" in text
        assert use in text.split("used as a module here", 1)[1], text
    out = build_errors("""
    class Meta:
        pass

    class C(metaclass=Meta):
        pass

    class M(nn.Module):
        def apply(self, x):
            return x + C().missing

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    assert "the only metaclass a class may name is abc.ABCMeta" in out, out
    out = build_errors("""
    class C:
        def __init__(self):
            super().__init__(1)

    class M(nn.Module):
        def apply(self, x):
            return x + C().width

    aot.target("t", M, x=aot.f32[2, 3])
    """)
    assert "object.__init__() takes no arguments" in out, out
