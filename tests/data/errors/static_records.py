"""Configs, dataclasses, namedtuples, partials and self attributes: misuse is located."""
import dataclasses
import functools
from collections import namedtuple

import ml_collections
from aotflax import nn, aot

CONFIG = ml_collections.ConfigDict({"width": 4, "model": {"depth": 2}})
CONFIG.lock()
CONFIG.model.heads = 2  # E: AOT331 the config is locked: it has no field 'heads'


@dataclasses.dataclass(frozen=True)
class Dims:
    width: int = 4
    depth: int = 1

    @staticmethod  # E: AOT325 only @property is supported
    def make():
        return Dims()


@dataclasses.dataclass
class Ordered:
    width: int = 4
    depth: int  # E: AOT304 has no default but follows a field with a default


Pair = namedtuple("Pair", ["lo", "hi"])


class Net(nn.Module):
    def apply(self, x, cfg=CONFIG):
        a = nn.Dense(x, cfg.widht)  # E: AOT346 the config has no field 'widht'
        b = Pair(1)  # E: AOT304 Pair is missing required field 'hi'
        c = Pair(1, 2)
        c.lo = 3  # E: AOT331 cannot set field 'lo' of the frozen Pair
        d = nn.Dense(x, **cfg.model)  # E: AOT302 unexpected keyword argument 'depth'
        e = functools.partial()  # E: AOT301 needs a function
        f = self.features  # E: AOT346 self.features is not set in this call of Net
        self.param = 1  # E: AOT331 cannot set self.param
        g = cfg.get()  # E: AOT349 config.get(name[, default])
        h = ml_collections.ConfigDict(width=4)  # E: AOT302 unexpected keyword argument 'width'
        return x


class UsesRecords(nn.Module):
    def apply(self, x):
        a = Dims().width
        b = Ordered().width
        return nn.Dense(x, a + b)


aot.target("net", Net, x=aot.f32[2, 8])
aot.target("records", UsesRecords, x=aot.f32[2, 8])
