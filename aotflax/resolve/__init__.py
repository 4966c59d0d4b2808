"""Resolve: interpret a model file statically into a `FileProgram`.

Every expression evaluates to a static value (numbers, tuples, dtypes, module
references...) or a `Tensor` known by shape and dtype.  Static control flow is
executed here (loops unrolled, branches pruned); array operations go through
the operation table, which checks them and records an `Op`.  User modules are
specialized per distinct hyperparameters and input types, one emitted function
each.  Errors are located diagnostics; after an error the statement's targets
are bound to `POISON` so one mistake does not cascade into many.

The interpreter is split by what it interprets: `core` (the file's top level and
its targets), `modules` (user modules and layers), `statements`, `expressions`
and `calls`, over the shared definitions in `base` and `helpers`.
"""

from .base import Frame, Sequential, Specialization, TargetDecl
from .core import Resolver, resolve

__all__ = ["Frame", "Resolver", "Sequential", "Specialization", "TargetDecl", "resolve"]
