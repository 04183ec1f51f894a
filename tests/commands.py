"""The commands users run, as installed in the venv's ``bin/`` (never ``python -m``).

Tests call the console scripts exactly as the README writes them, so a broken entry
point or argument parser fails the suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

BIN = Path(sys.executable).parent
#: The ``codex-exec`` console script installed by ``pip install``.
CODEX_EXEC = str(BIN / "codex-exec")
