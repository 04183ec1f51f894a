"""PTY output rendered as a terminal shows it, for ``%exec --tty`` cells.

A terminal program draws: ``\\r`` progress bars, cursor moves, erases. Written to a
cell as text, every frame stays in the cell and in the saved notebook. Here the bytes
go through pyte, a maintained VT100/xterm emulator: lines that leave the top of the
screen are final, the lines on the screen may still change. Both come out as text
with SGR colour sequences only (no ``\\r`` frames, no cursor or erase sequences).

pyte runs at a few hundred kB/s in pure Python, so plain output (a ``cat`` flood)
takes a fast path: complete lines of printable text and colours, arriving when the
cursor is at the start of an empty screen row, would scroll off a real terminal
unchanged except for the last screen-full, so only that last screen-full goes
through pyte. A program can only redraw what is on its screen, so the result is the
same as feeding everything to pyte.
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Callable, Iterable, Iterator

import pyte
from pyte import graphics

#: Wide enough that notebook output is not folded at the PTY's width (a notebook wraps
#: long lines itself); programs still draw for the PTY's size (``%exec`` gives 120).
RENDER_COLUMNS = 1024

#: Control characters other than tab, LF and CR (ESC among them: SGR is allowed).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: A CR not followed by LF, or an LF without its CR (a final CR may await its LF).
_LONE_CR_LF = re.compile(r"\r(?!\n|\Z)|(?<!\r)\n")
_SGR = re.compile(r"\x1b\[[0-9;]*m")
_ANY_CSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[@-_]")


def _named(table: dict[int, str]) -> dict[str, int]:
    return {name: code for code, name in table.items() if name != "default"}


_FG = {**_named(graphics.FG_ANSI), **_named(graphics.FG_AIXTERM)}
_BG = {**_named(graphics.BG_ANSI), **_named(graphics.BG_AIXTERM)}
_INDEXED: dict[str, int] = {}
for _i, _hex in enumerate(graphics.FG_BG_256):
    _INDEXED.setdefault(_hex, _i)
_FLAGS = (("bold", "1"), ("italics", "3"), ("underscore", "4"), ("blink", "5"),
          ("reverse", "7"), ("strikethrough", "9"))  # fmt: skip


def _colour(value: str, named: dict[str, int], extended: str) -> str | None:
    if value == "default":
        return None
    if value in named:
        return str(named[value])
    if value in _INDEXED:
        return f"{extended};5;{_INDEXED[value]}"
    try:
        r, g, b = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        return None
    return f"{extended};2;{r};{g};{b}"


def sgr(char: pyte.screens.Char) -> str:
    """The SGR parameters that draw ``char``'s attributes ('' for the defaults)."""
    return _sgr(tuple(char[1:]))  # the attributes, without the character


@functools.lru_cache(maxsize=1024)
def _sgr(attrs: tuple[object, ...]) -> str:
    char = pyte.screens.Char("", *attrs)
    params = [code for flag, code in _FLAGS if getattr(char, flag)]
    for value, named, extended in ((char.fg, _FG, "38"), (char.bg, _BG, "48")):
        code = _colour(value, named, extended)
        if code:
            params.append(code)
    return ";".join(params)


def _visible(char: pyte.screens.Char) -> bool:
    return bool(char.data.strip()) or char.bg != "default" or char.reverse


def render_line(line: dict[int, pyte.screens.Char]) -> str:
    """One screen row as text with SGR sequences, trailing blanks dropped."""
    columns = sorted(x for x in line if line[x].data)  # "" is the stub of a wide char
    while columns and not _visible(line[columns[-1]]):
        columns.pop()
    out: list[str] = []
    current = ""
    last = -1
    for x in columns:
        char = line[x]
        if x > last + 1:  # columns never written: blanks
            if current:
                out.append("\x1b[0m")
                current = ""
            out.append(" " * (x - last - 1))
        style = sgr(char)
        if style != current:
            out.append(f"\x1b[0;{style}m" if style else "\x1b[0m")
            current = style
        out.append(char.data)
        last = x
    if current:
        out.append("\x1b[0m")
    return "".join(out)


def _first_not_plain(text: str, start: int) -> int | None:
    """Where ``text`` stops being plain lines (text, tabs, SGR, CRLF); None: it does not.

    Written as a few C-speed scans rather than one regex with look-arounds, which
    runs at a few MB/s.
    """
    limit, pos = len(text), start
    while True:
        match = _CONTROL.search(text, pos, limit)
        if match is None:
            break
        sgr = _SGR.match(text, match.start()) if text[match.start()] == "\x1b" else None
        if sgr is None:
            limit = match.start()
            break
        pos = sgr.end()
    crlf, lf, cr = (text.count(x, start, limit) for x in ("\r\n", "\n", "\r"))
    ends_cr = limit == len(text) and text.endswith("\r")
    if crlf == lf and (cr == crlf or (cr == crlf + 1 and ends_cr)):
        return None if limit == len(text) else limit
    lone = _LONE_CR_LF.search(text, start, limit)
    return lone.start() if lone else (None if limit == len(text) else limit)


def _as_drawn(line: str) -> str:
    """A plain line as a screen shows it: tabs to the next stop of 8, no trailing blanks."""
    if "\x1b" not in line:
        return line.expandtabs(8).rstrip(" ")
    out: list[str] = []
    column = 0
    for piece in re.split(r"(\x1b\[[0-9;]*m)", line):
        if piece.startswith("\x1b"):
            out.append(piece)
            continue
        for char in piece:
            if char == "\t":
                out.append(" " * (8 - column % 8))
                column += 8 - column % 8
            else:
                out.append(char)
                column += 1
    return "".join(out)


class _Screen(pyte.Screen):
    """A pyte screen that hands over each row leaving its top."""

    def __init__(self, columns: int, lines: int, scrolled: Callable[[str], None]) -> None:
        super().__init__(columns, lines)
        self._scrolled = scrolled

    def index(self) -> None:
        top, bottom = self.margins or pyte.screens.Margins(0, self.lines - 1)
        if self.cursor.y == bottom and top == 0:
            self._scrolled(render_line(self.buffer[0]))
        super().index()


class TerminalText:
    """Feed PTY bytes; take the final lines; look at the lines still on the screen."""

    def __init__(self, rows: int, columns: int = RENDER_COLUMNS) -> None:
        self.rows = rows
        self.final: list[str] = []
        self.screen = _Screen(columns, rows, self.final.append)
        self.stream = pyte.Stream(self.screen)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""  # plain text at a clean row, not yet given to pyte

    def feed(self, data: bytes) -> None:
        known = max(0, len(self._pending) - 1)  # held back: plain (but a final \r)
        text = self._pending + self._decoder.decode(data)
        self._pending = ""
        while text:
            if self._at_clean_row():
                self._fast_path(text, known)
                return
            known = 0
            # Mid-line (a prompt, a progress bar): pyte takes this line, then look again.
            end = text.find("\r\n")
            head, text = (text, "") if end < 0 else (text[: end + 2], text[end + 2 :])
            self.stream.feed(head)

    def flush(self) -> None:
        """Give pyte what the fast path holds back (before looking at the screen)."""
        pending, self._pending = self._pending, ""
        if pending:
            self.stream.feed(pending)

    def _at_clean_row(self) -> bool:
        """The cursor at the start of an empty row, nothing below, pyte's parser idle."""
        cursor = self.screen.cursor
        # pyte's Stream keeps this flag between feeds; if a release renames it the fast
        # path simply stays off (slower, still exact).
        if cursor.x != 0 or not getattr(self.stream, "_taking_plain_text", False):
            return False
        buffer = self.screen.buffer
        return all(not buffer[y] for y in range(cursor.y, self.rows) if y in buffer)

    def _fast_path(self, text: str, known: int = 0) -> None:
        """Finalize plain lines that would scroll off unchanged; pyte gets the rest.

        A plain tail (the last screen-full and a plain partial line) is held back until
        more output or a look at the screen, so a flood never goes through pyte.
        """
        bad = _first_not_plain(text, known)
        limit = len(text) if bad is None else bad
        cut = text.rfind("\r\n", 0, limit) + 2  # end of the last plain line (1: none)
        for _ in range(self.rows - 1):  # the last screen-full stays on the screen
            if cut < 2:
                break
            cut = text.rfind("\r\n", 0, cut - 2) + 2
        if cut >= 2:
            self._finalize(text[:cut])
            text = text[cut:]
        if bad is None:
            self._pending = text
        else:
            self.flush()
            self.stream.feed(text)

    def _finalize(self, block: str) -> None:
        """``block``: complete plain lines that leave the screen, after its rows so far."""
        self.flush_screen_rows()
        style = sgr(self.screen.cursor.attrs)
        lead = f"\x1b[0;{style}m" if style else ""
        lines = block[:-2].split("\r\n")
        if "\t" in block or " \r\n" in block:  # as pyte would draw them
            lines = [_as_drawn(line) for line in lines]
        if lead or _SGR.search(block):
            # Colours carry from line to line inside the block, as in the terminal;
            # the block starts and ends in a known state.
            lines[0] = lead + lines[0]
            lines[-1] += "\x1b[0m"
            # The attributes at the cut are what the skipped colours leave behind.
            self.stream.feed("".join(_SGR.findall(block)))
        self.final.extend(lines)

    def flush_screen_rows(self) -> None:
        """The rows above the cursor scroll off first; the screen starts empty again."""
        for y in range(self.screen.cursor.y):
            self.final.append(render_line(self.screen.buffer[y]))
        self.screen.buffer.clear()
        self.screen.cursor_position()  # home; the attributes stay

    def take_final(self) -> list[str]:
        """The lines that left the screen since the last call (after a flush)."""
        self.flush()
        lines, self.final[:] = list(self.final), []
        return lines

    def screen_lines(self) -> list[str]:
        """The rows from the top of the screen to the last one with text (or the cursor)."""
        self.flush()
        buffer = self.screen.buffer
        last = max([y for y in buffer if buffer[y]] + [-1])
        if self.screen.cursor.x > 0:
            last = max(last, self.screen.cursor.y)
        return [render_line(buffer[y]) for y in range(last + 1)]


def plain(text: str) -> str:
    """Rendered text without its colours (what ``--capture`` returns)."""
    return _ANY_CSI.sub("", text)


def rendered_pieces(chunks: Iterable[bytes], rows: int) -> Iterator[str]:
    """PTY output as the terminal ends up showing it, colours removed, piece by piece.

    Lines come out as they leave the screen (so a long log streams in bounded memory);
    the rows still on the screen come last, once ``chunks`` ends.
    """
    term = TerminalText(rows)
    for data in chunks:
        term.feed(data)
        lines = term.take_final()
        if lines:
            yield "".join(plain(line) + "\n" for line in lines)
    screen = term.screen_lines()
    if screen:
        text = "\n".join(plain(line) for line in screen)
        yield text if term.screen.cursor.x > 0 else text + "\n"


def rendered_text(data: bytes, rows: int) -> str:
    """All of ``data`` as the terminal ends up showing it, colours removed."""
    return "".join(rendered_pieces([data], rows))
