"""Stand-ins for `nn`, `aot` and `jax_utils` so model files import cleanly in editors.

Model files are compiled, never run: every attribute here raises with a message
saying so.  The real meaning of each name is in `namespaces.py`.
"""

from __future__ import annotations

from typing import Any

_MESSAGE = (
    "aotflax model files are compiled, not executed: build them with "
    "`python aot_build.py models/` and import the generated module instead"
)


class _CompiledOnly:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if attr == "Module":
            return _Module
        return _CompiledOnly(f"{self._name}.{attr}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{self._name}: {_MESSAGE}")

    def __getitem__(self, item: Any) -> Any:
        return _CompiledOnly(f"{self._name}[...]")

    def __repr__(self) -> str:
        return f"<aotflax DSL name {self._name}>"


class _Module:
    """Base class of DSL modules (never instantiated)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(_MESSAGE)


nn = _CompiledOnly("nn")
aot = _CompiledOnly("aot")
jax_utils = _CompiledOnly("jax_utils")
