"""Background sessions from a notebook: ``%exec --bg``, ``%sessions``, ``%attach``, ``%logs``,
and ``%terminal`` (asks JupyterLab to open a Kernel Terminal on this kernel)."""

from __future__ import annotations

import argparse
import html
import shlex
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from IPython.core.magic import Magics, line_magic, magics_class
from IPython.display import display

from ..envpolicy import environ_with
from ..protocol import SpawnSpec
from ..service import ExecService
from ..sessions.api import FOLLOW_POLL, SessionManager
from ..sessions.cli import describe, format_table, human_size
from ..sessions.config import SessionConfig
from ..sessions.logtext import last_lines, log_chunks, log_text
from ..sessions.screenstart import fetch_snapshot_blocking, visible_part
from ..sessions.store import SessionError
from ..showtext import when_text
from .display import TtyDisplay
from .exec_magics import ExecMagics
from .options import MagicParser, parse_magic_args
from .result import ExecFailed

TERMINAL_MIME = "application/vnd.codex-exec.terminal+json"


def _manager(magics: Magics) -> SessionManager:
    return SessionManager(SessionConfig(config=magics.shell.config))


def start_background(magics: Magics, args: Any, argv: list[str], display: str) -> None:
    """``%exec --bg [--id ID] CMD``: start a session that outlives the kernel."""
    kernel = getattr(magics.shell, "kernel", None)
    service = ExecService.of(kernel) if kernel is not None else None
    base = service.table.child_base_env() if service is not None else None
    spec = SpawnSpec(argv=argv, cwd=args.cwd, env=environ_with(args.env, base), tty=args.tty)
    try:
        info = _manager(magics).create(spec, session_id=args.session_id, display=display)
    except (SessionError, Exception) as exc:
        raise ExecFailed(f"could not start the session: {exc}") from None
    print(f"started background session {info.id} (pid {info.meta.pid}); "
          f"%attach {info.id} to follow it, %sessions to list")  # fmt: skip


class SessionTable:
    """``%sessions`` output: an HTML table in notebooks, text in the console."""

    def __init__(self, infos: list[Any]) -> None:
        self.infos = infos

    def __repr__(self) -> str:
        return format_table(self.infos) if self.infos else "no sessions"

    def _repr_html_(self) -> str:
        # Never typeset: mathjax_ignore (MathJax 3, JupyterLab) / tex2jax_ignore (MathJax
        # 2) on the table, and commands in <code>, which MathJax skips anyway; a
        # command like `seq 1 $N; echo $HOME` must show as typed.
        if not self.infos:
            return "<em>no sessions</em>"
        heads = ("#", "id", "pid", "status", "exit", "output", "created", "command")
        head = "".join(f"<th>{h}</th>" for h in heads)
        rows = []
        for info in self.infos:
            m = info.meta
            exit_text = "" if m.exit_code is None else (m.signal or str(m.exit_code))
            cells = [html.escape(str(c)) for c in (info.index, m.id, m.pid or "", info.status,
                     exit_text, human_size(info.output_bytes))]  # fmt: skip
            created = html.escape(when_text(m.created_at))
            cells.append(f'<span title="{html.escape(m.created_at)}">{created}</span>')
            command = html.escape(describe(info))
            cells.append(f'<code title="{html.escape(shlex.join(m.argv))}">{command}</code>')
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        return (
            '<table class="codex-exec-sessions mathjax_ignore tex2jax_ignore">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    return MagicParser(prog=prog, description=description, add_help=True)


def _parse(parser: argparse.ArgumentParser, line: str) -> argparse.Namespace | None:
    """Options of a session magic; a usage error fails the cell, as in ``%exec``.
    A trailing ``# comment`` is ignored, as a shell would (``%sessions  # list them``)."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise ExecFailed(f"{parser.prog}: {exc}") from None
    return parse_magic_args(parser, tokens)


SESSIONS = _parser("%sessions", "List background sessions, or delete one.")
SESSIONS.add_argument("--delete", metavar="SEL", help="end and remove a session")
ATTACH = _parser("%attach", "Follow a background session's output here until it ends; "
                 "interrupt (the stop button) detaches and leaves it running.")  # fmt: skip
ATTACH.add_argument("selector", metavar="SEL", help="index (0 = newest), id or unique prefix")
ATTACH.add_argument("--from-start", action="store_true",
                    help="show the whole log first (a running TTY session otherwise "
                    "starts from its screen)")  # fmt: skip
LOGS = _parser("%logs", "Show a background session's log.")
LOGS.add_argument("selector", metavar="SEL")
LOGS.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
LOGS.add_argument("--raw", action="store_true",
                  help="a TTY session's bytes as logged, not the text shown")  # fmt: skip
TERMINAL = _parser("%terminal", "Open a Kernel Terminal on this kernel in JupyterLab.")
TERMINAL.add_argument("--session", metavar="SEL", help="show a background session instead")


@magics_class
class SessionMagics(Magics):
    @line_magic
    def sessions(self, line: str) -> SessionTable | None:
        args = _parse(SESSIONS, line)
        if args is None:
            return None
        manager = _manager(self)
        try:
            if args.delete:
                info = manager.resolve(args.delete)
                manager.delete(info.id)
                print(f"deleted session {info.id}")
                return None
            return SessionTable(manager.list())
        except SessionError as exc:
            raise ExecFailed(str(exc)) from None

    @line_magic
    def attach(self, line: str) -> None:
        args = _parse(ATTACH, line)
        if args is None:
            return
        manager = _manager(self)
        try:
            info = manager.resolve(args.selector)
            size = manager.read_log(info.id, 0, 0).size
            offset = 0 if args.from_start else max(0, size - 64 * 1024)
            try:
                if info.meta.tty:
                    snapshot = None
                    if info.status == "running" and not args.from_start:
                        snapshot = fetch_snapshot_blocking(manager, info.id)
                    if snapshot is not None:  # its screen, then the log after it
                        start, offset, rows = visible_part(snapshot), snapshot.offset, snapshot.rows
                    else:  # no screen model (ended, an older supervisor): the log
                        start, rows = b"", info.meta.size[0]
                    self._follow_screen(manager, info.id, start, offset, rows)
                else:
                    out = sys.stdout
                    for chunk in manager.follow(info.id, offset):
                        out.write(chunk.data.decode("utf-8", "replace"))
                        out.flush()
            except KeyboardInterrupt:
                print(f"\n[detached from {info.id}; it keeps running]")
                return
            final = manager.get(info.id)
            note = f"; {final.log_note}" if final.log_note else ""
            print(f"\n[session {info.id} {final.status}, exit code {final.meta.exit_code}{note}]")
        except SessionError as exc:
            raise ExecFailed(str(exc)) from None

    def _follow_screen(self, manager: SessionManager, session_id: str, start: bytes,
                       offset: int, rows: int) -> None:  # fmt: skip
        """A TTY session as ``%exec --tty`` shows a command, in one display updated in
        place: ``start`` (its screen, from the supervisor's snapshot), then the log from
        ``offset`` until the session ends."""
        exec_magics = self.shell.magics_manager.registry.get("ExecMagics")
        screen = TtyDisplay(
            getattr(exec_magics, "max_output_bytes", ExecMagics.max_output_bytes.default_value),
            rows,
            getattr(exec_magics, "tty_refresh", ExecMagics.tty_refresh.default_value),
        )  # fmt: skip
        screen.process_id = f"session:{session_id}"
        if start:
            screen.write("pty", start)
        try:
            while True:
                chunk = manager.read_log_raw(session_id, offset)
                if chunk.data:
                    offset = chunk.next_offset
                    screen.write("pty", chunk.data)
                    continue
                screen.tick()
                if manager.status(session_id) != "running":
                    if not manager.read_log_raw(session_id, offset).data:
                        break
                    continue
                time.sleep(FOLLOW_POLL)
        finally:
            screen.finish(screen.process_id)

    @line_magic
    def logs(self, line: str) -> None:
        args = _parse(LOGS, line)
        if args is None:
            return
        manager = _manager(self)
        try:
            info = manager.resolve(args.selector)
            offset = 0 if args.tail is None else manager.tail_offset(info.id, args.tail)
            if args.raw:
                for data in log_chunks(manager, info.id, offset):
                    sys.stdout.write(data.decode("utf-8", "replace"))
            elif args.tail is not None:  # rendering may add rows: the last N are shown
                sys.stdout.write(last_lines("".join(log_text(manager, info, offset)), args.tail))
            else:
                for piece in log_text(manager, info, offset):
                    sys.stdout.write(piece)
            note = manager.get(info.id).log_note
            if note:
                print(f"\n[{note}]")
            sys.stdout.flush()
        except SessionError as exc:
            raise ExecFailed(str(exc)) from None

    @line_magic
    def terminal(self, line: str) -> None:
        args = _parse(TERMINAL, line)
        if args is None:
            return
        request: dict[str, Any] = {
            "requestId": uuid.uuid4().hex,
            "createdAt": datetime.now(timezone.utc).isoformat(),
            "autoOpen": True,
            "label": "Open Kernel Terminal",
        }
        if args.session:
            try:
                request["sessionId"] = _manager(self).resolve(args.session).id
            except SessionError as exc:
                raise ExecFailed(str(exc)) from None
        text = ("Kernel Terminal: open it from JupyterLab's launcher (this frontend cannot "
                "show the panel); in a console use %exec or codex-exec session attach.")
        display({TERMINAL_MIME: request, "text/plain": text}, raw=True)


SessionMagics.sessions.__doc__ = SESSIONS.format_help()
SessionMagics.attach.__doc__ = ATTACH.format_help()
SessionMagics.logs.__doc__ = LOGS.format_help()
SessionMagics.terminal.__doc__ = TERMINAL.format_help()
