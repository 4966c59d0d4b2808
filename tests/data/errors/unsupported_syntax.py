"""Statements and expressions outside the DSL are rejected where a target reaches them, each located."""
from aotflax import nn, aot

COUNTER = 0
LIMIT = 0
while LIMIT < 2:  # E: AOT102 'while' loops run only inside functions
    LIMIT += 1


class Net(nn.Module):
    def apply(self, x):
        scale = LIMIT
        global COUNTER  # E: AOT102 'global' is not supported
        while x.sum() > 2:  # E: AOT335 depends on an array value
            x = x - 1.0
        try:  # E: AOT102 'try' is not supported
            x = nn.relu(x)
        except ValueError:
            pass
        with open("log.txt") as f:  # E: AOT102 'with' is supported only as
            pass
        axes = {0, 1}  # E: AOT103 set displays
        if (n := x.ndim) > 1:  # E: AOT103 assignment expressions
            pass
        del axes
        return nn.Dense(x, 4)


aot.target("net", Net, x=aot.f32[2, 8])
