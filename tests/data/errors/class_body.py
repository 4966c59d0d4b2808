"""A module class holds methods only: anything else in a class body is rejected when used."""
from aotflax import nn, aot


class Net(nn.Module):
    scale = 2.0  # E: AOT102 may contain only methods
    print("building")

    def apply(self, x):
        return x * 2.0


@nn.module_method  # E: AOT102 class decorators are not supported
class Other(nn.Module):
    def apply(self, x):
        return x


class Both(nn.Module):
    def apply(self, x):
        return Other(Net(x))


aot.target("both", Both, x=aot.f32[2, 8])
