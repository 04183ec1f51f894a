"""The server, assembled in one place: table, dispatcher, session methods, watchdog.

Every way of serving the protocol (the kernel's I/O thread, ``codex-exec serve``,
in-process tests and benchmarks) calls :func:`build_server`, so they cannot differ
in which methods exist or whether the orphan watchdog hears of each process group.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from traitlets.config import Config

from .dispatcher import Dispatcher
from .sessions.config import SessionConfig
from .sessions.methods import register_session_methods
from .table import ProcessTable
from .watchdog import Watchdog


@dataclass
class Server:
    """What :func:`build_server` returns; :meth:`close` once the table has shut down."""

    table: ProcessTable
    dispatcher: Dispatcher
    watchdog: Watchdog | None = None

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.close()


def build_server(
    loop: asyncio.AbstractEventLoop,
    config: Config | None = None,
    *,
    server_name: str = "codex-exec",
    watchdog_grace: float | None = None,
    session_config: SessionConfig | None = None,
) -> Server:
    """A process table on ``loop`` with its dispatcher and every ``session/*`` method.

    With ``watchdog_grace`` set, an orphan watchdog process is started and told of
    every process group the table starts and sees gone (see :mod:`.watchdog`)."""
    table = ProcessTable(loop=loop, config=config)
    dispatcher = Dispatcher(table, server_name=server_name)
    register_session_methods(dispatcher, session_config or SessionConfig(config=config))
    watchdog = None
    if watchdog_grace is not None:
        watchdog = Watchdog(grace=watchdog_grace)
        table.on_group_started.append(watchdog.register)
        table.on_group_gone.append(watchdog.unregister)
    return Server(table, dispatcher, watchdog)
