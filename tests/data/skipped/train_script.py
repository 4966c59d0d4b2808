"""A training script around a model: what no target reaches is skipped, with one warning each."""
import os  # W: AOT950 import of 'os' is not used by any target
from absl import app  # W: AOT950 import of 'app' from 'absl'
from absl import flags  # W: AOT950 import of 'flags' from 'absl'
import tensorflow_datasets as tfds  # W: AOT950 import of 'tensorflow_datasets'
from aotflax import nn, aot
import jax
import jax.numpy as jnp

FLAGS = flags.FLAGS  # W: AOT950 assignment to FLAGS
flags.DEFINE_float("learning_rate", default=0.1, help="The learning rate.")  # W: AOT950 call
os.makedirs("/tmp/aotflax-should-never-exist", exist_ok=True)  # W: AOT950 call


class CharacterTable(object):  # W: AOT950 class CharacterTable
    def __init__(self, chars):
        self._chars = sorted(set(chars))


class CNN(nn.Module):
    def apply(self, x):
        x = nn.Conv(x, features=4, kernel_size=(3, 3))
        x = x.reshape((x.shape[0], -1))
        return nn.log_softmax(nn.Dense(x, 10))


@jax.jit
def train_step(optimizer, batch):  # W: AOT950 function train_step
    with open("log.txt", "w") as log:
        log.write("step")
    while True:
        break
    return optimizer


def main(argv):  # W: AOT950 function main
    del argv
    for epoch in range(10):
        train_step(None, tfds.load("mnist"))


if __name__ == "__main__":  # W: AOT950 'if' block
    app.run(main)

aot.target("cnn", CNN, x=aot.f32[2, 8, 8, 1])
