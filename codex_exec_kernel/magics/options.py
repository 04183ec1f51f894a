"""Option parsing for ``%exec``: leading options, then the command line left verbatim.

IPython's ``magic_arguments`` splits the whole line into words, which would lose the
shell quoting of the command (``%exec echo "a  b"``). Here only the leading
``--options`` are tokenized; the command is passed to the shell exactly as typed.
"""

from __future__ import annotations

import argparse
import io
import shlex
from typing import Any

from .result import ExecFailed


class UsageError(Exception):
    """Bad options: the message and usage (empty after ``--help`` printed the help)."""


class MagicParser(argparse.ArgumentParser):
    """An argparse parser for a magic: errors raise instead of exiting the kernel, so
    every magic can fail its cell on a usage error (see :func:`parse_magic_args`)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}\n\n{self.format_usage()}")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise UsageError(message or "")


def parse_magic_args(parser: argparse.ArgumentParser, tokens: list[str]) -> Any:
    """Parsed options; None after ``--help``; a usage error fails the cell (ExecFailed)."""
    try:
        return parser.parse_args(tokens)
    except UsageError as exc:
        text = str(exc).strip()
        if not text:  # --help: argparse has printed it
            return None
        raise ExecFailed(text) from None


EPILOG = """\
environment and directory:
  The command runs with the kernel's environment active (its python first on PATH,
  VIRTUAL_ENV/CONDA_PREFIX set), so `%exec pip install x` installs where `import x`
  looks; in the kernel's current directory (follows %cd). Both are traits:
  c.KernelEnvironment.activate, c.KernelEnvironment.follow_cwd.

pipes or a terminal:
  Without --tty the command gets pipes: stdout and stderr stay apart (stderr shows
  red, --capture returns both), it never waits on a terminal prompt (a password, a
  pager), and output streams at full speed. IPython's `!` uses a PTY; here --tty
  does, and a notebook cell renders it like a terminal (progress bars update in
  place; the notebook keeps the final text with colours; c.ExecMagics.tty_render).
  Make it the default with
  c.ExecMagics.tty = True (then --no-tty asks for pipes).

completion: Tab completes command names from PATH for the first word, then paths.
"""


def build_parser() -> argparse.ArgumentParser:
    p = MagicParser(
        prog="%exec",
        description=(
            "Run a shell command in the kernel's process table, with live output.\n"
            "  %exec [options] COMMAND...        run COMMAND through your shell ($SHELL)\n"
            "  %%exec [options] [SHELL]          run the cell body as a script\n"
            "The cell fails when the exit status is not 0 (unless --allow-fail); the\n"
            "status is in _exit_code. Interrupt (the stop button) sends SIGINT to the\n"
            "command's process group; a second interrupt within a few seconds kills it."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=True,
    )
    p.add_argument("--cwd", help="working directory (default: the kernel's)")
    p.add_argument("--env", action="append", default=[], metavar="K=V",
                   help="set an environment variable (repeatable)")  # fmt: skip
    p.add_argument("--timeout", type=float, metavar="S",
                   help="terminate the command after S seconds (the cell fails)")  # fmt: skip
    p.add_argument("--tty", action="store_const", const=True, default=None,
                   help="run in a pseudo-terminal (isatty true: colours, progress bars); the "
                   "cell shows it as a terminal would, updated in place")  # fmt: skip
    p.add_argument("--no-tty", dest="tty", action="store_const", const=False,
                   help="run with pipes (stdout and stderr apart), whatever the default")
    p.add_argument("--input", action="store_true",
                   help="interactive stdin: each line you submit goes to the command; an "
                   "empty submission closes its stdin")  # fmt: skip
    p.add_argument("--capture", action="store_true",
                   help="return an ExecResult (exit_code, stdout, stderr) with all output, "
                   "for any exit status (r.check() raises); stdout works like an SList")
    p.add_argument("--raw", action="store_true",
                   help="with --capture --tty: the PTY's bytes as sent, not the rendered text")
    p.add_argument("--quiet", action="store_true", help="do not show output in the cell")
    p.add_argument("--allow-fail", action="store_true",
                   help="do not fail the cell on a non-zero exit status")
    p.add_argument("--bg", action="store_true",
                   help="start a background session that outlives the kernel; prints its id")
    p.add_argument("--id", dest="session_id", help="with --bg: the session's id")
    return p


PARSER = build_parser()
HELP = PARSER.format_help()
VALUE_OPTIONS = {"--cwd", "--env", "--timeout", "--id"}


def split_line(line: str) -> tuple[list[str], str]:
    """``(option tokens, rest of the line verbatim)``."""
    lex = shlex.shlex(io.StringIO(line), posix=True, punctuation_chars=False)
    lex.whitespace_split = True
    lex.commenters = ""
    tokens: list[str] = []
    expect_value = False
    while True:
        start = lex.instream.tell()
        # skip leading whitespace so `start` points at the token itself
        rest = line[start:]
        start += len(rest) - len(rest.lstrip())
        token = lex.get_token()
        if token is None or token == lex.eof:
            return tokens, ""
        if expect_value:
            tokens.append(token)
            expect_value = False
            continue
        if token == "--":
            return tokens, line[lex.instream.tell():].strip()
        if not token.startswith("-"):
            return tokens, line[start:].strip()
        name = token.split("=", 1)[0]
        tokens.append(token)
        expect_value = name in VALUE_OPTIONS and "=" not in token


def parse(line: str) -> tuple[argparse.Namespace, str] | None:
    """Options and command of a ``%exec`` line; None after ``--help``; a usage error
    raises ExecFailed (the cell fails)."""
    try:
        tokens, command = split_line(line)
    except ValueError as exc:  # unbalanced quotes in the options
        raise ExecFailed(f"%exec: {exc}") from None
    args = parse_magic_args(PARSER, tokens)
    if args is None:
        return None
    env = {}
    for item in args.env:
        if "=" not in item or item.startswith("="):
            raise ExecFailed(f"%exec: --env takes K=V, got {item!r}")
        key, value = item.split("=", 1)
        env[key] = value
    args.env = env
    return args, command
