"""Shared definitions of the resolver: limits, control-flow signals, frames, records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..diagnostics import Span
from ..program import (
    Function,
    ParamDecl,
)
from ..scopes import (
    FunctionState,
    Scope,
)
from ..values import (
    Env,
    ModuleRef,
    Spec,
)

#: Guard against runaway unrolling (a `range(10**9)` typo).


MAX_UNROLL = 100_000
#: Nesting of user functions and modules (well below Python's own recursion limit).
MAX_CALL_DEPTH = 48
#: Statements and comprehension items one file may execute at build time: a bound on
#: resolve time whatever the model does (nested loops, recursion), so a build never hangs.
MAX_STEPS = 2_000_000
#: Largest static value a model may build: ints of this many bits, sequences this long.
MAX_STATIC_BITS = 1 << 16
MAX_STATIC_LEN = 1 << 20


class Abort(Exception):
    """Stop resolving the current statement; the diagnostic is already recorded."""


class OutOfSteps(Exception):
    """The step budget is spent: stop resolving the whole file (already reported)."""


class ReturnSignal(Exception):
    def __init__(self, value: Any):
        self.value = value


class BreakSignal(Exception):
    pass


class ContinueSignal(Exception):
    pass


class ImportTimeSignal(Exception):
    """An array operation ran while a top-level assignment's value was being computed:
    the value is computed again where a function reads it (`ImportTimeArray`)."""


class ClassNamespace(Env):
    """The names a class body binds as it runs (its attributes): like the file's top level,
    an array value assigned there is an `ImportTimeArray`, computed where it is read."""

    __slots__ = ()


@dataclass(frozen=True, eq=False)
class ImportTimeArray:
    """`KEY = jax.random.PRNGKey(0)`, `MASK = jnp.tril(jnp.ones((4, 4)))`: an array value a
    model file computes at its top level, when Python imports it.  The build runs no import:
    the expression is evaluated again, in the file's names, inside each function that reads
    the name, emitting its operations there (they are pure functions of static values, so
    every reader sees the value the import would have made).  Class attributes
    (`SCALE = jnp.array(...)` in a class body) and the defaults of functions and methods
    (`def apply(self, x, mask=MASK)`, evaluated once by Python) are such values too.  Read
    by another top-level statement, it is the error the expression gives there."""

    name: str
    expr: Any
    env: Env
    span: Span
    #: `KEY, SUB = jax.random.split(jax.random.PRNGKey(0))`: the unpacking target and this
    #: name's position in it (the value is unpacked where it is read, as Python unpacked it).
    target: Any = None
    item: int = 0


@dataclass
class Frame:
    """An activation: variables, the function being built and the module scope."""

    env: Env
    fn: FunctionState | None
    scope: Scope | None
    #: Module whose method this is (for `self`).
    module: ModuleRef | None = None


@dataclass(frozen=True)
class Sequential:
    """`nn.Sequential([...])`: its layers, applied in order when called."""

    layers: tuple[Any, ...]


@dataclass
class TargetDecl:
    name: str
    module: ModuleRef
    specs: dict[str, Spec]
    method: str
    platforms: tuple[str, ...]
    devices: int
    span: Span
    #: Training targets: the loss function, optimizer and the loss's own inputs.
    loss: Any = None
    optimizer: Any = None
    batch: dict[str, Spec] = field(default_factory=dict)
    #: Device mesh axes (name, size); empty: `devices` in one data-parallel axis.
    mesh: tuple[tuple[str, int], ...] = ()
    #: Parameter sharding rules: (path pattern, partition spec), first match wins.
    sharding_rules: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    #: Hardware to cross-compile for: TPU topologies ("v5e:2x2"), GPU targets ("h100").
    tpu: tuple[str, ...] = ()
    gpu: tuple[str, ...] = ()
    #: Training targets: `after_update=` (a function of the model file) and `microbatches=`.
    after_update: Any = None
    microbatches: int = 1
    #: `processes=`: jax.distributed processes the mesh spans (each feeds its local shard).
    processes: int = 1
    #: `buckets=`, `pad_value=`, `masks=` (`padding.Declaration`).
    serving: Any = None


@dataclass
class Specialization:
    """A resolved user-module method: its function and what callers must wire up."""

    function: Function
    params: dict[tuple[str, ...], ParamDecl]
    state: dict[tuple[str, tuple[str, ...]], ParamDecl]
    #: Output structure: the return value with fresh tensors (copied per call).
    result: Any
    #: Shared modules it receives as arguments (`scopes.SharedArg`), in argument order.
    shared: tuple[Any, ...] = ()
