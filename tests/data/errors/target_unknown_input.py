from aotflax import nn, aot


class Net(nn.Module):
    def apply(self, x, features: int = 4):
        return nn.Dense(x, features)


aot.target("a", Net, y=aot.f32[2, 8])  # E: AOT403 has no input 'y'
aot.target("b", Net, x=aot.f32[2, 8], features=8)  # E: AOT409 must be a spec
aot.target("c", Net.partial(features=8))  # E: AOT304 missing required argument 'x'
