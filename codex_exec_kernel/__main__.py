"""``python -m codex_exec_kernel install [--user|--sys-prefix|--prefix P]`` and the CLI."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
