"""``codex-exec session ...``: create, list, attach, logs, signal and delete sessions.

:func:`add_session_parser` plugs the ``session`` subcommand into the ``codex-exec``
parser; ``python -m codex_exec_kernel.sessions.cli session list`` (or just ``list``)
runs it standalone. Every subcommand is a thin layer over :class:`SessionManager`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal as _signal
import sys
from collections.abc import Sequence

from ..envpolicy import environ_with
from ..protocol import SIGNALS, SpawnSpec
from ..showtext import command_text, one_line, when_text
from .api import SessionManager, check_signal_number
from .config import SessionConfig
from .launch import LaunchError
from .logtext import last_lines, log_chunks, log_text
from .store import SessionError, SessionInfo
from .terminal import attach_terminal


def add_session_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``session`` and its subcommands; ``args.func(args)`` runs the chosen one."""
    parser = subparsers.add_parser(
        "session",
        help="background sessions: processes that outlive the kernel (like tmux/dtach)",
        description="Manage background sessions. SEL is an index from `list` (0 = newest), "
        "an exact id, or a unique id prefix. State lives in $CODEX_EXEC_HOME/sessions "
        "(default ~/.local/share/codex-exec).",
    )
    sub = parser.add_subparsers(dest="session_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("create", help="start a command as a background session; prints its id")
    p.add_argument("--id", dest="session_id", help="the id (default: a memorable two-word name)")
    p.add_argument("--tty", action="store_true", help="run it in a pseudo-terminal")
    p.add_argument("--cwd", help="working directory (default: the current one)")
    p.add_argument(
        "--env", action="append", default=[], metavar="K=V",
        help="set an environment variable (repeatable); the rest is inherited",
    )  # fmt: skip
    p.add_argument("--size", metavar="ROWSxCOLS", help="terminal size (default: yours, or 24x80)")
    # Not dest="command": the top-level parser of `codex-exec` stores its subcommand there.
    p.add_argument("argv", metavar="command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")

    p = sub.add_parser("list", help="list sessions, newest first")
    p.add_argument("--json", action="store_true", help="print JSON (the session/list shape)")

    p = sub.add_parser("attach", help="connect your terminal to a session (detach: Ctrl-\\)")
    p.add_argument("selector", metavar="SEL")
    p.add_argument(
        "--from-offset", type=int, default=None, metavar="BYTES",
        help="replay the log from this byte offset (default: the last 64 KiB)",
    )  # fmt: skip

    p = sub.add_parser("logs", help="print a session's output log")
    p.add_argument("selector", metavar="SEL")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until it ends")
    p.add_argument("--tail", type=int, default=None, metavar="N", help="only the last N lines")
    p.add_argument(
        "--raw", action="store_true",
        help="a TTY session's bytes as logged (default: the text its terminal showed)",
    )  # fmt: skip

    p = sub.add_parser("signal", help="send a signal to a session's process group")
    p.add_argument("selector", metavar="SEL")
    p.add_argument("signal", metavar="NAME", help="interrupt, terminate, kill, hangup, INT, ...")

    p = sub.add_parser("delete", help="end a session (if running) and remove it")
    p.add_argument("selectors", nargs="+", metavar="SEL")
    p.add_argument(
        "--grace", type=float, default=None, metavar="SECONDS",
        help="time between SIGTERM and SIGKILL (default 2)",
    )  # fmt: skip

    parser.set_defaults(func=run_session_command)
    return parser


def run_session_command(args: argparse.Namespace, config: SessionConfig | None = None) -> int:
    """Run the parsed ``session`` subcommand; returns the process exit status."""
    manager = SessionManager(config)
    command = {
        "create": _create, "list": _list, "attach": _attach, "logs": _logs,
        "signal": _signal_cmd, "delete": _delete,
    }[args.session_command]  # fmt: skip
    try:
        return command(manager, args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # every error is one line, never a traceback
        print(f"codex-exec session {args.session_command}: error: {error_line(exc)}",
              file=sys.stderr)  # fmt: skip
        return 1


def error_line(exc: BaseException) -> str:
    """One line saying what went wrong, for a person (no traceback)."""
    if isinstance(exc, LaunchError):
        message = exc.message
    elif isinstance(exc, (SessionError, ValueError)):
        message = str(exc)
    elif isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        message = f"{exc.strerror or exc}{where}"
    else:
        message = f"{type(exc).__name__}: {exc}"
    return " ".join(message.split()) or type(exc).__name__


# --------------------------------------------------------------------------- subcommands


def _parse_size(value: str | None) -> tuple[int, int]:
    if value:
        try:
            rows, cols = (int(v) for v in value.lower().split("x"))
        except ValueError:
            raise ValueError(f"--size must look like 24x80, got {value!r}") from None
        if not (1 <= rows <= 10_000 and 1 <= cols <= 10_000):
            raise ValueError("--size rows and cols must be between 1 and 10000")
        return rows, cols
    for fd in (1, 0, 2):
        try:
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
        except OSError:
            continue
    return 24, 80


def _create(manager: SessionManager, args: argparse.Namespace) -> int:
    command = list(args.argv)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ValueError("no command given: codex-exec session create [OPTIONS] -- CMD [ARGS...]")
    overrides: dict[str, str] = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key or "\0" in item:
            raise ValueError(f"--env must be KEY=VALUE, got {item!r}")
        overrides[key] = value
    spec = SpawnSpec(
        argv=command, cwd=args.cwd, env=environ_with(overrides) if overrides else None,
        tty=args.tty, size=_parse_size(args.size),
    )  # fmt: skip
    info = manager.create(spec, session_id=args.session_id)
    print(info.id)
    return 0


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{int(value)}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{n}B"


def format_table(infos: Sequence[SessionInfo]) -> str:
    header = ("#", "ID", "PID", "STATUS", "EXIT", "OUTPUT", "CREATED", "COMMAND")
    rows = [header]
    for info in infos:
        m = info.meta
        exit_text = "-"
        if m.exit_code is not None:
            exit_text = m.signal or str(m.exit_code)
        rows.append((
            str(info.index), m.id, str(m.pid or "-"), info.status, exit_text,
            human_size(info.output_bytes), when_text(m.created_at), describe(info),
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
             for r in rows]  # fmt: skip
    return "\n".join(line.rstrip() for line in lines)


def describe(info: SessionInfo) -> str:
    """The command, or why the session is corrupt, plus a note if output was dropped."""
    if info.problem is not None:
        text = f"[{info.problem}; delete it with: codex-exec session delete {info.id}]"
    else:
        text = one_line(command_text(info.meta.argv, info.meta.display))
    note = info.log_note
    return f"{text}  [{note}]" if note else text


def _list(manager: SessionManager, args: argparse.Namespace) -> int:
    infos = manager.list()
    if args.json:
        print(json.dumps({"sessions": [i.to_json() for i in infos]}, indent=1))
    elif infos:
        print(format_table(infos))
    else:
        print("no sessions", file=sys.stderr)
    return 0


def _attach(manager: SessionManager, args: argparse.Namespace) -> int:
    info = manager.resolve(args.selector)
    return asyncio.run(attach_terminal(manager, info.id, args.from_offset))


def _write_out(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _logs(manager: SessionManager, args: argparse.Namespace) -> int:
    info = manager.resolve(args.selector)
    offset = 0 if args.tail is None else manager.tail_offset(info.id, args.tail)
    if args.raw or not info.meta.tty:
        for data in log_chunks(manager, info.id, offset, args.follow):
            _write_out(data)
    elif args.tail is not None and not args.follow:  # rendering may add rows
        _write_out(last_lines("".join(log_text(manager, info, offset)), args.tail).encode())
    else:
        for piece in log_text(manager, info, offset, args.follow):
            _write_out(piece.encode())
    final = manager.get(info.id)
    if final.log_note:
        lost = f"{final.dropped_bytes} bytes of output were not logged"
        print(f"codex-exec session logs: {final.id}: {final.log_note}: {lost}", file=sys.stderr)
    return 0


def parse_signal_name(name: str) -> int:
    """A protocol name (``interrupt``), a POSIX name (``INT``, ``SIGINT``) or a number."""
    lowered = name.lower()
    if lowered in SIGNALS:
        return SIGNALS[lowered]
    if name.isdigit():
        return check_signal_number(int(name))
    upper = name.upper()
    upper = upper if upper.startswith("SIG") else "SIG" + upper
    try:
        return int(_signal.Signals[upper])
    except KeyError:
        raise ValueError(
            f"unknown signal {name!r}: use one of {', '.join(SIGNALS)} or a POSIX name"
        ) from None


def _signal_cmd(manager: SessionManager, args: argparse.Namespace) -> int:
    signum = parse_signal_name(args.signal)
    info = manager.resolve(args.selector)
    if not manager.signal(info.id, signum):
        print(
            f"codex-exec session signal: session {info.id} is {info.status}, not signalled",
            file=sys.stderr,
        )
        return 1
    return 0


def _delete(manager: SessionManager, args: argparse.Namespace) -> int:
    ids = [manager.resolve(sel).id for sel in args.selectors]  # all first: indices shift
    for session_id in dict.fromkeys(ids):
        manager.delete(session_id, args.grace)
        print(f"deleted {session_id}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: ``python -m codex_exec_kernel.sessions.cli [session] SUBCOMMAND``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "session":
        argv.insert(0, "session")
    parser = argparse.ArgumentParser(prog="codex-exec")
    add_session_parser(parser.add_subparsers(dest="command", metavar="COMMAND"))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
