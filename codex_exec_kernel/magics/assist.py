"""Help where Jupyter users look for it: the inspector (Shift-Tab) and Tab completion.

* ipykernel's inspector takes the Python name under the cursor, so Shift-Tab on
  ``%exec`` shows the builtin ``exec``; on a line of one of our magics it now shows
  that magic's help (the same text as ``%exec?`` and ``%exec --help``).
* Tab after ``%exec`` completes command names from the ``PATH`` the command will get
  (the kernel's environment, see ``kernelenv.py``) for the first word; other words,
  and anything with a ``/``, fall through to IPython's path completion.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from typing import Any

from IPython.core.error import TryNext

from .options import VALUE_OPTIONS

LINE_MAGICS = ("exec", "sessions", "attach", "logs", "terminal")
_MAGIC = re.compile(r"(?:^|[=(]\s*)(%%?)([A-Za-z_]\w*)")


def magic_at_cursor(code: str, cursor_pos: int) -> str | None:
    """``"%exec"``, ``"%%exec"``, ``"%sessions"``… when the cursor is on such a line."""
    if code.lstrip().startswith("%%exec"):
        return "%%exec"
    start = code.rfind("\n", 0, cursor_pos) + 1
    end = code.find("\n", cursor_pos)
    line = code[start : len(code) if end < 0 else end]
    match = _MAGIC.search(line.strip())
    if match is None or match.group(2) not in LINE_MAGICS or match.group(1) != "%":
        return None
    if cursor_pos - start < line.find(match.group(1) + match.group(2)):
        return None  # the cursor is before the magic (on `r` of `r = %exec ...`)
    return "%" + match.group(2)


def install_inspector(kernel: Any, shell: Any) -> None:
    """Route inspection of our magics' lines to their help, everything else as before."""
    original: Callable[..., Any] = kernel.do_inspect

    def do_inspect(code: str, cursor_pos: int, detail_level: int = 0,
                   omit_sections: Any = ()) -> Any:  # fmt: skip
        name = magic_at_cursor(code, cursor_pos)
        if name is None:
            return original(code, cursor_pos, detail_level, omit_sections)
        bundle = shell.object_inspect_mime(name, detail_level=detail_level,
                                           omit_sections=omit_sections)  # fmt: skip
        if not getattr(shell, "enable_html_pager", False):
            bundle.pop("text/html", None)
        return {"status": "ok", "found": True, "data": bundle, "metadata": {}}

    kernel.do_inspect = do_inspect


def _words_before(text_until_cursor: str) -> list[str]:
    """The command words before the one being completed (options of %exec skipped)."""
    _, _, rest = text_until_cursor.lstrip().partition(" ")
    try:
        tokens = shlex.split(rest)
    except ValueError:
        tokens = rest.split()
    if rest and not rest[-1].isspace() and tokens:
        tokens = tokens[:-1]  # the word under the cursor
    words: list[str] = []
    expect_value = False
    for token in tokens:
        if words:
            words.append(token)
        elif expect_value:
            expect_value = False
        elif token.startswith("-"):
            expect_value = token in VALUE_OPTIONS
        else:
            words.append(token)
    return words


def commands_on_path(prefix: str, path: str) -> list[str]:
    """Executable names on ``path`` starting with ``prefix``, sorted, once each."""
    found: set[str] = set()
    for directory in path.split(os.pathsep):
        try:
            entries = os.scandir(directory or ".")
        except OSError:
            continue
        with entries:
            for entry in entries:
                if entry.name.startswith(prefix) and entry.name not in found:
                    try:
                        if entry.is_file() and os.access(entry.path, os.X_OK):
                            found.add(entry.name)
                    except OSError:
                        continue
    return sorted(found)


def make_completer(path_of: Callable[[], str]) -> Callable[[Any, Any], list[str]]:
    def complete_exec(shell: Any, event: Any) -> list[str]:
        symbol = event.symbol
        if "/" in symbol or _words_before(event.text_until_cursor):
            raise TryNext  # a path: IPython's own completion
        if symbol.startswith("-"):
            raise TryNext
        commands = commands_on_path(symbol, path_of())
        if not commands:
            raise TryNext
        return commands

    return complete_exec


def install_completer(shell: Any, path_of: Callable[[], str]) -> None:
    shell.set_hook("complete_command", make_completer(path_of), str_key="%exec")
