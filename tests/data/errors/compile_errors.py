"""What Python's compiler rejects beyond its parser is located too (and stops there)."""
from aotflax import nn, aot


def helper(a, a):  # E: AOT100 duplicate argument
    return a
