"""``%exec`` and ``%%exec``: a shell in notebook cells and ``jupyter console``."""

from __future__ import annotations

import os
import pwd
from typing import Any

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from traitlets import Bool, Enum, Float, Int

from ..envpolicy import environ_with
from ..protocol import SpawnSpec
from ..service import ExecService
from .display import Display, TtyDisplay
from .options import HELP, UsageError, parse
from .result import ExecFailed, ExecResult
from .runner import CellRun, RunOptions
from .terminal_text import rendered_text

MiB = 1024 * 1024


def user_shell() -> str:
    shell = os.environ.get("SHELL")
    if shell:
        return shell
    try:
        return pwd.getpwuid(os.getuid()).pw_shell or "/bin/sh"
    except KeyError:
        return "/bin/sh"


@magics_class
class ExecMagics(Magics):
    """The ``%exec`` family. Settings are traits: ``c.ExecMagics.max_output_bytes = ...``."""

    max_output_bytes = Int(
        1 * MiB,
        config=True,
        help="Bytes of output a cell shows: past it, the first and last halves stay (cut "
        "at line ends) and a notice says how many bytes and lines were skipped.",
    )
    tty = Bool(
        False,
        config=True,
        help="Run commands in a PTY by default (as IPython's ! does); --tty/--no-tty "
        "override it per command. Off by default: pipes keep stderr apart and never wait "
        "on a terminal prompt (see %exec --help).",
    )
    tty_render = Enum(
        ["auto", "always", "never"],
        "auto",
        config=True,
        help="Render --tty output like a terminal in one display updated in place. 'auto': "
        "when the request comes from a notebook cell (its metadata names a cellId, as "
        "JupyterLab and Notebook send); a terminal frontend (jupyter console), which "
        "ignores display updates, gets the raw bytes and renders them itself. 'always' "
        "suits nbclient/papermill runs.",
    )
    tty_refresh = Float(
        0.1,
        config=True,
        help="Seconds between updates of a --tty cell's live output (a progress bar); "
        "large outputs update less often (about 2 MB/s of updates at most).",
    )
    retained_bytes = Int(
        64 * MiB,
        config=True,
        help="Output kept per %exec process for process/read and --capture of huge output.",
    )
    kill_window = Float(
        5.0, config=True, help="A second interrupt within this many seconds kills the command."
    )
    linger = Float(
        1.0,
        config=True,
        help="Seconds a cell waits after the exit for output held open by background children.",
    )

    # ------------------------------------------------------------------ plumbing
    @property
    def service(self) -> ExecService:
        kernel = getattr(self.shell, "kernel", None)
        if kernel is None:
            raise UsageError("%exec needs an IPython kernel (a notebook or jupyter console)")
        return ExecService.attach(kernel)

    def _start(self, argv: list[str], args: Any, title: str) -> Any:
        table = self.service.table
        spec = SpawnSpec(
            argv=argv,
            cwd=os.path.abspath(args.cwd) if args.cwd else os.getcwd(),
            # the kernel's environment (kernelenv.py) with the --env overrides
            env=environ_with(args.env, table.child_base_env()),
            tty=args.tty,
            pipe_stdin=args.input,
            size=_terminal_size(),
        )

        def start() -> Any:
            proc = table.start(spec, title=title)
            proc.retained_cap = max(self.retained_bytes, table.retained_bytes)
            return proc

        return self.service.io.run(start)

    def _run(self, argv: list[str], args: Any, command: str) -> ExecResult | None:
        proc = self._start(argv, args, title=command)
        display: Display | TtyDisplay
        # --input reads the user's lines on this thread while another shows output:
        # only streams can be written from there, so an interactive PTY stays raw.
        if args.tty and not args.input and self._render_tty():
            display = TtyDisplay(self.max_output_bytes, _terminal_size()[0],
                                 self.tty_refresh, quiet=args.quiet)  # fmt: skip
        else:
            display = Display(limit=self.max_output_bytes, quiet=args.quiet)
        run = CellRun(
            self.service, proc, display,
            RunOptions(
                capture=args.capture, timeout=args.timeout, kill_window=self.kill_window,
                linger=self.linger, stdin_lines=args.input, input_fn=self._input,
            ),
        )  # fmt: skip
        outcome = run.run()
        if outcome.lingering and not args.quiet:
            print(f"[exited; background processes still hold its output: {outcome.process_id}]")
        captured = outcome.captured
        if args.tty and not args.raw:  # what the terminal showed, without colours
            stdout = rendered_text(bytes(captured["pty"]), _terminal_size()[0])
        else:
            stdout = (captured["stdout"] + captured["pty"]).decode("utf-8", "replace")
        result = ExecResult(
            command=command,
            exit_code=outcome.exit_code,
            stdout=stdout,
            stderr=captured["stderr"].decode("utf-8", "replace"),
            process_id=outcome.process_id,
            signal=outcome.signal,
            timed_out=outcome.timed_out,
        )
        self.shell.user_ns["_exit_code"] = outcome.exit_code
        if args.capture:  # like subprocess.run: the result whatever the status
            return result
        if outcome.timed_out and not args.allow_fail:
            raise ExecFailed(f"timed out after {args.timeout:g}s: {command}", result)
        if outcome.exit_code not in (0, None) and not args.allow_fail:
            how = f" ({outcome.signal})" if outcome.signal else ""
            raise ExecFailed(f"exit status {outcome.exit_code}{how}: {command}", result)
        return None

    def _render_tty(self) -> bool:
        if self.tty_render != "auto":
            return self.tty_render == "always"
        kernel = getattr(self.shell, "kernel", None)
        parent = kernel.get_parent("shell") if kernel is not None else None
        return bool((parent or {}).get("metadata", {}).get("cellId"))

    def _input(self, prompt: str) -> str:
        # The kernel's input() becomes an input_request on the stdin channel.
        return input(prompt)

    def _parse(self, line: str) -> tuple[Any, str] | None:
        parsed = parse(line)
        if parsed is None:  # --help printed
            return None
        args, command = parsed
        if args.tty is None:
            args.tty = self.tty
        return args, command

    # ------------------------------------------------------------------ magics
    @line_magic("exec")
    def exec_line(self, line: str) -> ExecResult | None:
        parsed = self._parse(line)
        if parsed is None:
            return None
        args, command = parsed
        if args.bg:
            return self._background(args, command)
        if not command:
            print(HELP)
            return None
        return self._run([user_shell(), "-c", command], args, command)

    @cell_magic("exec")
    def exec_cell(self, line: str, cell: str) -> ExecResult | None:
        parsed = self._parse(line)
        if parsed is None:
            return None
        args, shell = parsed
        argv = [shell.strip() or user_shell(), "-c", cell]
        if args.bg:
            return self._background(args, cell, argv=argv)
        title = cell.strip().splitlines()[0] if cell.strip() else argv[0]
        return self._run(argv, args, title)

    def _background(self, args: Any, command: str, argv: list[str] | None = None) -> None:
        from .sessions import start_background

        start_background(self, args, argv or [user_shell(), "-c", command], display=command)


def _terminal_size() -> tuple[int, int]:
    """A tty command's size: wide enough for a notebook output area."""
    return (24, 120)


ExecMagics.exec_line.__doc__ = HELP
ExecMagics.exec_cell.__doc__ = HELP
