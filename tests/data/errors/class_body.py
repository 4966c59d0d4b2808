"""A module class holds methods and attributes (name = value): anything else in a class
body is rejected when used."""
from aotflax import nn, aot


class Net(nn.Module):
    scale = 2.0
    print("building")  # E: AOT102 may contain only methods and attributes

    def apply(self, x):
        return x * self.scale


@nn.module_method  # E: AOT102 class decorators are not supported
class Other(nn.Module):
    def apply(self, x):
        return x


class Both(nn.Module):
    def apply(self, x):
        return Other(Net(x))


aot.target("both", Both, x=aot.f32[2, 8])
