from aotflax import nn, aot


class Block(nn.Module):
    def apply(self, x, features):
        return nn.Dense(x, features)


class Net(nn.Module):
    def apply(self, x):
        y = nn.Dense(x)  # E: AOT304 missing required argument 'features'
        z = nn.Conv(x[:, None, :], 4)  # E: AOT304 missing required argument 'kernel_size'
        return Block(x)  # E: AOT304 missing required argument 'features'


aot.target("net", Net, x=aot.f32[2, 8])
