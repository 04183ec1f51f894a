"""Full-screen programs for the screen-snapshot tests of the clients (issue 14)."""

from __future__ import annotations

import uuid
from pathlib import Path

#: vim's ex commands that redraw its whole screen 400 times before it waits for keys:
#: far more than the 64 KiB of log an attach replays, so a raw replay starts after the
#: switch to the alternate screen. It ends on the top of the file.
VIM_REDRAWS = (
    'for i in range(200) | exe "normal! G" | redraw! | exe "normal! gg" | redraw! | endfor'
)


def vim_argv(path: Path, *commands: str) -> list[str]:
    """vim without any user or system setup (the same screen everywhere) on ``path``."""
    argv = ["vim", "-N", "-u", "NONE", "-i", "NONE"]
    for command in commands:
        argv += ["-c", command]
    return [*argv, str(path)]


def long_file(where: Path) -> Path:
    """3000 numbered lines: ``line N of the long file``."""
    path = where / f"long-{uuid.uuid4().hex[:6]}.txt"
    path.write_text("".join(f"line {i} of the long file\n" for i in range(1, 3001)))
    return path
