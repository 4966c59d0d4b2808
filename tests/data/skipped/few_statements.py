"""A model file with a few statements no target reaches: one warning each, at each."""
import os  # W: AOT950 import of 'os' is not used by any target
from aotflax import nn, aot

SCALE = os.environ.get("SCALE")  # W: AOT950 assignment to SCALE


def debug_dump(x):  # W: AOT950 function debug_dump
    return os.system("touch /tmp/aotflax-should-never-exist")


class Net(nn.Module):
    def apply(self, x):
        return nn.Dense(x, 3)


aot.target("net", Net, x=aot.f32[2, 4])
