from aotflax import nn, aot


class Block(nn.Module):
    def apply(self, x, features: int = 4):
        return nn.Dense(x, features)


class Net(nn.Module):
    def apply(self, x):
        h = nn.Dense(x, featurs=16)  # E: AOT302 unexpected keyword argument 'featurs'
        return Block(x, width=4)  # E: AOT302 unexpected keyword argument 'width'


aot.target("net", Net, x=aot.f32[2, 8])
