from aotflax import nn, aot


class Net(nn.Module):
    def apply(self, x):
        h = nn.Dense(inputs, 4)  # E: AOT340 name 'inputs' is not defined
        return Missing(x)  # E: AOT340 name 'Missing' is not defined


aot.target("net", Net, x=aot.f32[2, 8])
aot.target("net2", Nett, x=aot.f32[2, 8])  # E: AOT340 name 'Nett' is not defined
