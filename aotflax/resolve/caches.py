"""Old flax.nn's decode cache in model code, mapped onto the explicit `cache` state.

In old flax.nn a decode step ran with an `nn.attention.Cache` collection: attention
layers called with `cache=` kept their keys and values in it, and a module could
keep its own entry (lm1b's and wmt's `AddPositionEmbs` track the decode position):

    cache_entry = cache.retrieve(None)
    i = cache_entry.i
    cache.store(cache_entry.replace(i=cache_entry.i + 1))

Here the cache is a hyperparameter of the decode target,
`nn.attention.Cache().initialize_cache((batch, max_length))`, and every entry is a
variable of the target's `cache` state collection, in Linen's layout: an attention
layer's `cached_key`, `cached_value` and `cache_index` (see `ops/attention.py`), and a
module's own entry as `cache/<module path>/cache_index` (uint32, like old flax.nn's
`i`).  `apply(params, state, tokens)` then returns the updated cache in its new state.
A module's own entry holds only the position: `cache_entry.key` / `.value` (old
flax.nn's zero arrays of a module that stored a shape) are not mapped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..diagnostics import Span
from ..ops import CallError
from ..ops import initializers as inits
from ..program import Tensor
from ..scopes import Scope, StateVariable
from ..values import AttentionCache, BoundMethod, describe_value
from .base import Frame

if TYPE_CHECKING:
    from .core import Resolver


@dataclass(eq=False)
class CacheEntry:
    """What `cache.retrieve()` gives a module: its decode position, as a state variable."""

    variable: StateVariable
    #: A position set by `replace(i=...)`, not stored yet.
    i: Any = None


_ENTRY_FIELDS = "a module's cache entry keeps its position 'i' only"


class CachesMixin:
    """`nn.attention.Cache()`, `initialize_cache`, `retrieve`, `store` and cache entries."""

    def _cache_attribute(self: Resolver, value: Any, attr: str, span: Span) -> Any:
        if isinstance(value, AttentionCache):
            if attr in ("initialize_cache", "retrieve", "store"):
                return BoundMethod(value, attr, span)
            raise self.error("AOT371", f"nn.attention.Cache has no supported attribute "
                             f"'{attr}'", span, hint="model code uses cache.retrieve() and "
                             "cache.store(); targets use Cache().initialize_cache(shape)")
        if attr == "i":
            return value.i if value.i is not None else value.variable.read(span)
        if attr == "replace":
            return BoundMethod(value, attr, span)
        raise self.error("AOT371", f"cache_entry.{attr} is not supported: {_ENTRY_FIELDS}",
                         span, hint="keep other decode arrays with self.state(name, shape, "
                                    "init, collection=\"cache\")")

    def _cache_method(self: Resolver, receiver: Any, name: str, args: list, kwargs: dict, span: Span,
                      frame: Frame) -> Any:
        if isinstance(receiver, CacheEntry):
            return self._cache_replace(receiver, args, kwargs, span)
        if name == "initialize_cache":
            return self._initialize_cache(args, kwargs, span)
        fn, scope = self._need_module_frame(frame, span, f"cache.{name}")
        if receiver.shape is None:
            raise self.error("AOT372", f"cache.{name}() on an nn.attention.Cache without a "
                             "shape", span, hint="give the decode target nn.attention.Cache()."
                             "initialize_cache((batch, max_length))")
        if name == "retrieve":
            if len(args) + len(kwargs) > 1 or any(k != "default" for k in kwargs):
                raise self.error("AOT301", "cache.retrieve takes one argument: "
                                 "cache.retrieve(default=None)", span)
            return self._cache_entry(scope, span)
        if len(args) != 1 or kwargs:
            raise self.error("AOT301", "cache.store takes one value: cache.store(entry)", span)
        entry = args[0]
        if not isinstance(entry, CacheEntry) or entry.variable.scope.prefix != scope.prefix:
            raise self.error("AOT371", f"cache.store() takes this module's entry from "
                             f"cache.retrieve(), got {describe_value(entry)}", span,
                             hint="store what cache.retrieve() returned, updated with "
                                  ".replace(i=...)")
        if entry.i is not None:
            self._state_write(entry.variable, entry.i, span)
        return None

    def _initialize_cache(self: Resolver, args: list, kwargs: dict, span: Span) -> AttentionCache:

        b = self._bind_signature("shape, dtype=None", "initialize_cache", args, kwargs, span)
        shape = b["shape"]
        if not (isinstance(shape, (tuple, list)) and shape and all(
                isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
            raise self.error("AOT372", f"initialize_cache takes the batch and attention "
                             f"dimensions as a tuple of positive ints, got "
                             f"{describe_value(shape)}", span,
                             hint="for example initialize_cache((batch, max_length))")
        return AttentionCache(tuple(shape))

    def _cache_entry(self: Resolver, scope: Scope, span: Span) -> CacheEntry:
        try:
            scope.state("cache", "cache_index", (), "uint32", inits.ZEROS, span)
        except CallError as e:
            raise self.error(e.code, e.message, span, hint=e.hint, notes=e.notes) from None
        return CacheEntry(StateVariable(scope, "cache", "cache_index", (), "uint32", span))

    def _cache_replace(self: Resolver, entry: CacheEntry, args: list, kwargs: dict,
                       span: Span) -> CacheEntry:
        bad = [k for k in kwargs if k != "i"]
        if args or bad:
            raise self.error("AOT371", f"cache_entry.replace({bad[0] if bad else '...'}=...) "
                             f"is not supported: {_ENTRY_FIELDS}", span,
                             hint="write cache_entry.replace(i=new_position)")
        value = kwargs.get("i", entry.i)
        if not isinstance(value, (Tensor, int)) or isinstance(value, bool):
            raise self.error("AOT371", f"cache_entry.replace(i=...) takes an array or an int, "
                             f"got {describe_value(value)}", span)
        return CacheEntry(entry.variable, value)
