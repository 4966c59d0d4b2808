"""The output folder: one build at a time, every write checked first, nothing outside it.

The build owns the folder it is given (`generated/`) and nothing else. A
repository can carry anything inside that folder, symbolic links included, so

- every folder the build writes through must be a real folder below the
  output folder (`artifacts.real_folder`), and every file it replaces a regular
  file: a link, FIFO or device in its way is an error before the first write;
- the generated sources are staged (written and fsynced under temporary names
  next to their destinations) and only then renamed into place, so a failure
  while writing leaves every file as it was;
- pruning removes only real target folders (with a manifest) found without
  following a link;
- two builds into the same folder are serialized by an advisory lock
  (`fcntl.flock` on `.aotflax.lock` in the folder), waited for at most a
  bounded time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from .artifacts import (
    MANIFEST_NAME,
    UnsafeOutputPath,
    fault_point,
    fsync_dir,
    read_regular,
    real_folder,
    stage_file,
)

__all__ = ["LOCK_NAME", "OutputError", "build_lock", "changed_files", "check_file",
           "check_folder", "prune_targets", "write_files"]

LOCK_NAME = ".aotflax.lock"


class OutputError(Exception):
    """The output folder cannot be written as asked (the message says why and what to do)."""


# --- the lock ------------------------------------------------------------------------


@contextlib.contextmanager
def build_lock(out: Path, timeout: float, notify: Callable[[str], None]) -> Iterator[None]:
    """Holds the output folder's build lock for the duration of the block.

    The lock file is removed while the lock is still held, and a build that
    acquires a lock checks that its file is still the one at the path, so a
    build that finishes never lets two others in at once. The lock is advisory
    (fcntl); where fcntl is missing (Windows) builds are not serialized.

    **Arguments:** `out`: the output folder (created if missing; removed again
    if the build leaves it empty); `timeout`: seconds to wait for another build;
    `notify`: called once with a message when the build has to wait.

    **Raises:** `OutputError` when another build holds the lock for longer than `timeout`.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    created = not out.exists()
    path = out / LOCK_NAME
    fd = _acquire(path, fcntl, time.monotonic() + timeout, timeout, notify)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # still holding the lock: see _acquire
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only succeeds when nothing was written


def _acquire(path: Path, fcntl: object, deadline: float, timeout: float,
             notify: Callable[[str], None]) -> int:
    waited = False
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # a finishing build may remove it
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as error:
            raise OutputError(f"cannot open the build lock {path}: {error.strerror} "
                              f"({path.parent} must be a folder and {LOCK_NAME} a regular file "
                              "in it)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # type: ignore[attr-defined]
        except BlockingIOError:
            os.close(fd)
            holder = _holder(path)
            if time.monotonic() >= deadline:
                raise OutputError(
                    f"another aotflax build{holder} has been writing {path.parent} for more than "
                    f"{timeout:g} s; wait for it to finish, or give it longer with --lock-timeout"
                ) from None
            if not waited:
                notify(f"waiting for another aotflax build{holder} writing {path.parent}")
                waited = True
            time.sleep(0.1)
            continue
        try:  # a build that finished unlinked the file we opened: lock the new one
            if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _holder(path: Path) -> str:
    try:
        pid = read_regular(path, 64).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


# --- checked, staged writes --------------------------------------------------------------


def changed_files(out: Path, files: Mapping[str, str]) -> dict[str, bytes]:
    """The files (relative path -> bytes) whose content differs from what is in `out`.

    Checks every destination before anything is written: each folder on the way
    is a real folder (or missing) and each file a regular file (or missing).

    **Raises:** `OutputError` listing every path in the way.
    """
    problems, changed = [], {}
    for rel, text in files.items():
        data = text.encode()
        path = out / rel
        try:
            check_folder(out, path.parent)
            current = _current(path)
        except OutputError as error:
            problems.append(str(error))
            continue
        if current != data:
            changed[rel] = data
    if problems:
        raise OutputError("\n".join(dict.fromkeys(problems)) +
                          "\nnothing was written; move these out of the way and rebuild")
    return changed


def check_folder(out: Path, folder: Path) -> None:
    """`folder` (below `out`) can be created or written into without leaving `out`.

    **Raises:** `OutputError` naming the link or file in the way.
    """
    current = out
    for part in folder.relative_to(out).parts:
        current = current / part
        try:
            mode = current.lstat().st_mode
        except FileNotFoundError:
            return
        if stat.S_ISLNK(mode):
            raise OutputError(f"{current} is a symbolic link; the build writes only inside {out} "
                              "and never through a link")
        if not stat.S_ISDIR(mode):
            raise OutputError(f"{current} is a file where the build needs a folder")


def check_file(path: Path) -> bool:
    """Whether a regular file is at `path` (False: nothing is); an error for anything else.

    **Raises:** `OutputError` for a link, folder, FIFO or device where the build writes a file.
    """
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(mode):
        raise OutputError(f"{path} is a symbolic link; the build does not replace links")
    if not stat.S_ISREG(mode):
        raise OutputError(f"{path} is not a regular file; the build writes a file there")
    return True


def _current(path: Path) -> bytes | None:
    """The bytes now at `path`, None when it is missing; an error when it is not a plain file."""
    if not check_file(path):
        return None
    try:
        return read_regular(path, 1 << 30)
    except OSError as error:
        raise OutputError(f"cannot read {path}: {error}") from None


def write_files(out: Path, files: Mapping[str, bytes]) -> None:
    """Writes every file or none: all are staged under temporary names, then renamed.

    A failure while staging (a full disk, a permission) removes the staged files
    and the folders made for them, leaving the output as it was.

    **Arguments:** `out`: the output folder; `files`: relative path -> bytes,
    checked by `changed_files`.
    """
    made: list[Path] = []
    staged: list[tuple[str, Path]] = []
    try:
        for rel, data in files.items():
            path = out / rel
            for parent in reversed(path.relative_to(out).parents[:-1]):
                if not (out / parent).exists():
                    made.append(out / parent)
            real_folder(out, path.parent)
            staged.append((stage_file(path, data), path))
    except BaseException as error:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(error, (OSError, UnsafeOutputPath)):
            raise OutputError(f"cannot write {out}: {error}; nothing was changed") from None
        raise
    for tmp, path in staged:
        fault_point("rename", path)
        os.replace(tmp, path)
    for folder in {path.parent for _, path in staged}:
        fsync_dir(folder)


# --- pruning --------------------------------------------------------------------------------


def prune_targets(out: Path, folder: Path, keep: set[str]) -> list[str]:
    """Removes target folders under `folder` whose names are not in `keep`.

    Only real folders holding a regular `manifest.json` are removed, found
    without following any link: `folder` itself must be reached from `out`
    through real folders, and a link among its entries is left alone.

    **Returns:** the names removed.
    """
    try:
        check_folder(out, folder)
        mode = folder.lstat().st_mode
    except (OutputError, FileNotFoundError):
        return []
    if not stat.S_ISDIR(mode):
        return []
    removed = []
    for child in sorted(folder.iterdir()):
        if child.name in keep or not stat.S_ISDIR(child.lstat().st_mode):
            continue
        try:
            manifest = (child / MANIFEST_NAME).lstat().st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISREG(manifest):
            fault_point("remove", child)
            shutil.rmtree(child)  # never follows links inside (rmtree's fd-based walk)
            removed.append(child.name)
    return removed
