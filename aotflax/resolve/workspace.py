"""The model files of one build, found as Python would find them, parsed on demand.

A model file may import another (`from models import utils`, `from . import layers`,
`import vit_jax.models_resnet as m`).  Names resolve as Python resolves them with
the build folder on `sys.path`, plus the build folder's own name as a package
(`from models import utils` while building `models/`, as when the project root is
the working directory).  Only files inside the build folder are ever read, and
every file is parsed, never executed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .. import ir
from ..diagnostics import BuildError

#: Reads and parses one file of the build (the driver's reader: checks, decoding).
Loader = Callable[[Path], ir.ModelFile]


class Workspace:
    """Finds and parses the model files a build's imports name (each at most once)."""

    def __init__(self, root: Path | None, loader: Loader):
        #: The build folder (None: a lone file, which can import nothing of ours).
        self.root = root.resolve() if root is not None else None
        self._loader = loader
        self._parsed: dict[Path, ir.ModelFile | BuildError] = {}
        #: The real path of every parsed model (by identity of its IR).
        self._paths: dict[int, Path] = {}

    def add(self, path: Path, model: ir.ModelFile) -> None:
        """Register a file the driver parsed itself (the file being built)."""
        path = path.resolve()
        self._parsed[path] = model
        self._paths[id(model)] = path

    def parsed(self) -> list[ir.ModelFile]:
        """Every file parsed so far, in the order first read."""
        return [m for m in self._parsed.values() if isinstance(m, ir.ModelFile)]

    def path_of(self, model: ir.ModelFile) -> Path | None:
        return self._paths.get(id(model))

    # ------------------------------------------------------------------ finding

    def _inside(self, path: Path) -> bool:
        return self.root is not None and (path == self.root or self.root in path.parents)

    def locate(self, dotted: str) -> tuple[str, Path] | None:
        """Where module `dotted` lives: ("file", path), ("package", folder) or None.

        Searched in the build folder, and in its parent for names that start with the
        build folder's own name; never outside the build folder.
        """
        if self.root is None or not dotted:
            return None
        parts = dotted.split(".")
        if not all(p.isidentifier() for p in parts):
            return None
        bases = [self.root]
        if parts[0] == self.root.name:
            bases.append(self.root.parent)
        for base in bases:
            found = self._locate_in(base, parts)
            if found is not None:
                return found
        return None

    def _locate_in(self, base: Path, parts: list[str]) -> tuple[str, Path] | None:
        folder = base.joinpath(*parts[:-1])
        file = folder / f"{parts[-1]}.py"
        package = folder / parts[-1]
        for kind, candidate in (("file", file), ("file", package / "__init__.py"),
                                ("package", package)):
            try:
                real = candidate.resolve()
            except (OSError, RuntimeError):  # a symlink loop
                continue
            if not self._inside(real):
                continue
            if kind == "file" and real.is_file():
                return "file", candidate
            if kind == "package" and real.is_dir():
                return "package", candidate
        return None

    def relative(self, importer: ir.ModelFile, level: int, module: str) -> str | None:
        """The absolute dotted name of `from <level dots><module> import ...` in `importer`
        ("" for the build folder itself), or None when it would leave the build folder."""
        path = self.path_of(importer)
        if path is None or self.root is None:
            return None
        package = path.parent
        for _ in range(level - 1):
            package = package.parent
        if not self._inside(package):
            return None
        rel = package.relative_to(self.root).parts
        parts = [*rel, *(module.split(".") if module else [])]
        return ".".join(parts)  # "" for the build folder itself

    # ------------------------------------------------------------------ parsing

    def load(self, path: Path) -> ir.ModelFile:
        """The parsed file at `path`; raises the file's `BuildError` (every time)."""
        try:
            real = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop: the loader reports it, located
            real = path.absolute()
        got = self._parsed.get(real)
        if got is None:
            try:
                got = self._loader(path)
                self._paths[id(got)] = real
            except BuildError as e:
                got = e
            self._parsed[real] = got
        if isinstance(got, BuildError):
            raise got
        return got
