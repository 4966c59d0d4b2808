from aotflax import nn, aot


class NoApply(nn.Module):  # E: AOT321 has no apply method
    def encode(self, x):
        return x


class NotAModule:  # E: AOT320 plain Python class
    def apply(self, x):
        return x


class Uses(nn.Module):
    def apply(self, x):
        NoApply(x)
        return NotAModule(x)


y = nn.Dense(3, 4)  # E: AOT324 can only be called inside a module's apply
aot.target("dense", nn.Dense, x=aot.f32[2, 8])  # E: AOT401 must name a user module
aot.target("uses", Uses, x=aot.f32[2, 8])
aot.target("y", y, x=aot.f32[2, 8])
