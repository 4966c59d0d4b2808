"""Golden: a loop of named Dense layers, f-string names, automatic names."""
from aotflax import aot, nn


class MLP(nn.Module):
    def apply(self, x, hidden=(8, 4), num_classes: int = 3):
        x = x.reshape((x.shape[0], -1))
        for i, h in enumerate(hidden):
            x = nn.relu(nn.Dense(x, h, name=f"hidden_{i}"))
        return nn.log_softmax(nn.Dense(x, num_classes))


aot.target("mlp", MLP, x=aot.f32[2, 3, 4])
