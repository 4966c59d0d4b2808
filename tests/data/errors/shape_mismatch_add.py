from aotflax import nn, aot


class Net(nn.Module):
    def apply(self, x):
        h = nn.Dense(x, 16)
        return h + x  # E: AOT210 (2, 16)


aot.target("net", Net, x=aot.f32[2, 8])
