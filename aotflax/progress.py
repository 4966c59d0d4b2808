"""Progress on a terminal: one status line on stderr, rewritten in place.

Long steps (compiling targets, resolving a large model for `aotflax summary`)
say what they are doing while a person watches; piped into a file or another
program, stderr stays quiet, so logs and `2>&1 | grep` see only results and
errors.  `AOTFLAX_PROGRESS=1` forces the status lines on (`0`: off).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import TextIO


class Progress:
    """A status line that replaces itself; a no-op unless the stream is a terminal."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            forced = os.environ.get("AOTFLAX_PROGRESS")
            enabled = forced == "1" if forced in ("0", "1") else _isatty(self.stream)
        self.enabled = enabled
        self.start = time.perf_counter()
        self._shown = False

    def update(self, text: str) -> None:
        """Show `text` (with the time since the start) in place of the previous line."""
        if not self.enabled:
            return
        line = f"{text} ({time.perf_counter() - self.start:.0f} s)"
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r\x1b[K" + line[:width])
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        """Remove the status line (before printing results)."""
        if self.enabled and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a file
        return False


__all__ = ["Progress"]
