"""``render()``: a screen model as bytes that redraw it on a fresh xterm.js.

Written into a newly created terminal of ``rows`` x ``cols``, the bytes reproduce:
the scrollback and the normal screen (each line with its SGR attributes, written as
lines so that xterm.js scrolls the history into its own scrollback), the saved cursor
of each buffer, the alternate screen when it is shown (entered with the mode the
program used), the scroll region, the cursor (position, pending wrap, visibility)
and pen, and the modes a client must honour: application cursor keys and keypad,
bracketed paste, mouse reporting and its encoding, autowrap, insert mode, the title.

At another size than the model's, lines are cut at ``cols`` and the top rows go to
the scrollback; the program redraws for the new size once it is told (SIGWINCH).
"""

from __future__ import annotations

import functools
from collections.abc import Generator
from typing import Any

from .model import BLANK, Cell, ScreenModel

#: Private modes written after the screen when set (or, for 7 and 25, when reset).
_ON_MODES = (1, 9, 1000, 1002, 1003, 1004, 1005, 1006, 1015, 2004)


def _colour(value: str, base: int, bright: int, extended: int) -> str:
    if value == "default":
        return ""
    if value[0] == "p":
        n = int(value[1:])
        return str(base + n if n < 8 else bright + n - 8)
    if value[0] == "x":
        return f"{extended};5;{value[1:]}"
    r, g, b = (int(value[i : i + 2], 16) for i in (1, 3, 5))
    return f"{extended};2;{r};{g};{b}"


_FLAGS = (("bold", "1"), ("dim", "2"), ("italics", "3"), ("underscore", "4"), ("blink", "5"),
          ("reverse", "7"), ("hidden", "8"), ("strikethrough", "9"))  # fmt: skip


Attrs = tuple[Any, ...]  # a cell without its character: Cell[1:]


@functools.lru_cache(maxsize=4096)
def sgr(attrs: Attrs) -> str:
    """The one SGR sequence that sets exactly ``attrs`` (from any previous state)."""
    cell = Cell("", *attrs)
    params = ["0"]
    params += [code for name, code in _FLAGS if getattr(cell, name)]
    for code in (_colour(cell.fg, 30, 90, 38), _colour(cell.bg, 40, 100, 48)):
        if code:
            params.append(code)
    return "\x1b[" + ";".join(params) + "m"


def _attrs(cell: Any) -> Attrs:
    return tuple(cell[1:]) if isinstance(cell, Cell) else _PLAIN


_PLAIN: Attrs = tuple(BLANK[1:])


class _Writer:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pen = _PLAIN

    def pen_to(self, attrs: Attrs) -> None:
        if attrs != self.pen:
            self.parts.append(sgr(attrs))
            self.pen = attrs

    def line(self, line: Any, cols: int) -> None:
        """One grid line, up to its last cell that differs from a blank one."""
        end = 0
        for x, cell in line.items():
            if end <= x < cols and cell != BLANK:
                end = x + 1
        parts = self.parts
        get = line.get
        for x in range(end):
            cell = get(x, BLANK)
            data = cell[0]
            if not data and x > 0:
                continue  # the stub after a wide character
            attrs = cell[1:]
            if attrs != self.pen:
                self.pen_to(tuple(attrs))
            parts.append(data or " ")

    def text(self, s: str) -> None:
        self.parts.append(s)

    def cup(self, y: int, x: int) -> None:
        self.parts.append(f"\x1b[{y + 1};{x + 1}H")

    def saved_cursor(self, savepoints: list[Any], rows: int, cols: int, top: int) -> None:
        if savepoints:
            cursor = savepoints[-1].cursor
            self.cup(min(max(cursor.y - top, 0), rows - 1), min(cursor.x, cols - 1))
            self.pen_to(_attrs(cursor.attrs))
            self.parts.append("\x1b7")


def render(model: ScreenModel, rows: int | None = None, cols: int | None = None) -> bytes:
    """Bytes that redraw ``model`` on a fresh xterm.js of ``rows`` x ``cols``."""
    steps = render_steps(model, rows, cols)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def render_steps(
    model: ScreenModel, rows: int | None = None, cols: int | None = None
) -> Generator[None, None, bytes]:
    """:func:`render` in steps (one per line drawn): a caller on an event loop yields
    to it between steps, since thousands of scrollback lines take a while. The model
    must not change until the generator returns the bytes."""
    rows = rows or model.lines
    cols = cols or model.columns
    w = _Writer()
    shift = max(0, model.lines - rows)  # screen rows that go to the scrollback
    alt = model.other is not None
    normal = model.other.buffer if model.other is not None else model.buffer
    normal_saved = model.other.savepoints if model.other is not None else model.savepoints
    lines = list(model.history) + [normal[y] for y in range(model.lines)]
    for i, line in enumerate(lines):
        if i:
            w.pen_to(_attrs(BLANK))  # a scroll fills new rows with the pen's background
            w.text("\r\n")
        w.line(line, cols)
        yield
    w.saved_cursor(normal_saved, rows, cols, shift)
    if alt:
        w.pen_to(_attrs(BLANK))
        w.text(f"\x1b[?{model.alt_mode}h")
        for y in range(min(rows, model.lines)):
            w.cup(y, 0)
            w.line(model.buffer[y], cols)
            yield
        w.saved_cursor(model.savepoints, rows, cols, 0)
        shift = 0
    _finish(model, w, rows, cols, shift)
    return "".join(w.parts).encode("utf-8", "surrogateescape")


def _finish(model: ScreenModel, w: _Writer, rows: int, cols: int, shift: int) -> None:
    """Scroll region, cursor, pen and modes, after the grids."""
    if model.margins is not None and model.lines == rows:
        w.text(f"\x1b[{model.margins.top + 1};{model.margins.bottom + 1}r")
    origin = model.private_mode(6)
    if origin:
        w.text("\x1b[?6h")
    top = model.margins.top if origin and model.margins is not None else 0
    y = min(max(model.cursor.y - shift, 0), rows - 1)
    x = model.cursor.x
    if x >= model.columns and model.columns <= cols and model.private_mode(7):
        # pending wrap: write the last cell again, which leaves xterm.js in that state
        cell = model.buffer[model.cursor.y][model.columns - 1]
        w.cup(y - top, model.columns - 1)
        w.pen_to(_attrs(cell))
        w.text(cell.data or " ")
    else:
        w.cup(y - top, min(x, cols - 1))
    w.pen_to(_attrs(model.cursor.attrs))
    for mode in _ON_MODES:
        if model.private_mode(mode):
            w.text(f"\x1b[?{mode}h")
    if not model.private_mode(7):
        w.text("\x1b[?7l")
    if model.cursor.hidden:
        w.text("\x1b[?25l")
    if (4) in model.mode:
        w.text("\x1b[4h")
    if model.keypad:
        w.text("\x1b=")
    if model.title:
        w.text(f"\x1b]2;{model.title}\x07")
