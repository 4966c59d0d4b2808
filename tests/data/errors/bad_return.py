from aotflax import nn, aot


class Net(nn.Module):
    def apply(self, x, features: int = 4):  # E: AOT323 apply returns str 'features'; a target's results are arrays
        h = nn.Dense(x, features)
        return h, "features"


class Dict(nn.Module):
    def apply(self, x):  # E: AOT323 a dict of arrays with the key int 0; its keys must be strings
        return {0: x}


aot.target("net", Net, x=aot.f32[2, 8])
aot.target("as_dict", Dict, x=aot.f32[2, 8])
aot.target("net", Net, x=aot.f32[2, 8])  # E: AOT407 declared twice
