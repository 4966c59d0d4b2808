#!/usr/bin/env python3
"""Build every model under a folder: `python aot_build.py models/` (see `--help`)."""

import sys

from aotflax.driver import main

if __name__ == "__main__":
    sys.exit(main())
