"""Settings of background sessions, as a traitlets Configurable.

Kept in its own module so every face (CLI, protocol methods, magics, supervisor
launcher) reads the same knobs from the same place, and a Jupyter config file can
set them (``c.SessionConfig.home = ...``).
"""

from __future__ import annotations

import os

from traitlets import Float, Int, List, Unicode, default
from traitlets.config import Configurable

HOME_ENV = "CODEX_EXEC_HOME"


class SessionConfig(Configurable):
    """Where sessions live and how clients behave towards them."""

    home = Unicode(
        help="Root of codex-exec state; sessions live in <home>/sessions/<id>/. "
        "Default: $CODEX_EXEC_HOME, else ~/.local/share/codex-exec.",
    ).tag(config=True)

    @default("home")
    def _default_home(self) -> str:
        env = os.environ.get(HOME_ENV)
        if env:
            return os.path.abspath(env)
        return os.path.join(os.path.expanduser("~"), ".local", "share", "codex-exec")

    attach_tail_bytes = Int(
        64 * 1024,
        help="An attach without an explicit offset starts this many bytes before the log's end.",
    ).tag(config=True)

    screen_scrollback_lines = Int(
        2000,
        help="Lines of plain history the supervisor's screen model of a PTY session keeps "
        "(process/snapshot of a session: kept in the supervisor, so it outlives the kernel).",
    ).tag(config=True)

    detach_keys = List(
        Unicode(),
        default_value=["C-\\", "C-b d"],
        help="Key sequences that detach `codex-exec session attach` (tmux-like notation: "
        "'C-x' is Ctrl-x, keys of a sequence separated by spaces).",
    ).tag(config=True)

    delete_grace = Float(
        2.0, help="Seconds between SIGTERM and SIGKILL when deleting a running session."
    ).tag(config=True)

    start_timeout = Float(
        15.0, help="Seconds to wait for a new session's supervisor to report it started."
    ).tag(config=True)

    exit_linger = Float(
        1.0,
        help="Seconds the supervisor waits, after the child exits, for the end of its output "
        "streams (a grandchild may still hold them) before recording the exit.",
    ).tag(config=True)

    client_drain_timeout = Float(
        10.0,
        help="Seconds the supervisor keeps serving attached clients the rest of the log after "
        "the child ended, before it exits anyway.",
    ).tag(config=True)
