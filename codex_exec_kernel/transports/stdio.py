"""``codex-exec serve``: the protocol over stdin/stdout, one JSON message per line.

The server owns its children: when stdin closes, on SIGTERM/SIGINT/SIGHUP, it ends
every process group it started (grace, then SIGKILL) and exits; if it is SIGKILLed
the watchdog does the same. Output backpressure: when the peer stops reading stdout
and our buffer passes a high-water mark, the connection is marked congested and the
processes it follows stop being read, so memory stays bounded and nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any

from jupyter_core.application import JupyterApp
from traitlets import Int, default
from traitlets.config import Configurable

from ..dispatcher import ConnectionState, Dispatcher
from ..protocol import PARSE_ERROR, ProtocolError, encode_line, error_response
from ..server import build_server
from ..sessions.config import SessionConfig
from ..table import ProcessTable

log = logging.getLogger("codex_exec_kernel")

MiB = 1024 * 1024


class StdioServer(Configurable):
    """Serves one connection on a pair of pipes."""

    max_message_bytes = Int(
        64 * MiB, config=True, help="Longest input line accepted; longer ones are refused."
    )
    write_high_water = Int(
        4 * MiB, config=True, help="Output buffered for a slow peer before processes pause."
    )

    def __init__(self, table: ProcessTable, dispatcher: Dispatcher, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.dispatcher = dispatcher
        self.loop = table.loop
        self.done = asyncio.Event()
        self.state: ConnectionState | None = None
        self._writer: asyncio.WriteTransport | None = None

    # Connection protocol ---------------------------------------------------
    binary = False

    def send(self, message: dict[str, Any], buffers: list[bytes]) -> None:
        if self._writer is None or self._writer.is_closing():
            return
        self._writer.write(encode_line(message))

    # ------------------------------------------------------------------------
    async def serve(self, in_fd: int, out_fd: int) -> None:
        server = self

        class _Out(asyncio.Protocol):
            def pause_writing(self) -> None:
                if server.state:
                    server.state.set_congested(True)

            def resume_writing(self) -> None:
                if server.state:
                    server.state.set_congested(False)

            def connection_lost(self, exc: Exception | None) -> None:
                server.done.set()

        class _In(asyncio.Protocol):
            def __init__(self) -> None:
                self.buf = bytearray()
                self.discarding = False

            def data_received(self, data: bytes) -> None:
                server._on_data(self, data)

            def eof_received(self) -> bool:
                server.done.set()
                return False

            def connection_lost(self, exc: Exception | None) -> None:
                server.done.set()

        out_pipe = os.fdopen(out_fd, "wb", buffering=0)
        in_pipe = os.fdopen(in_fd, "rb", buffering=0)
        try:
            self._writer, _ = await self.loop.connect_write_pipe(_Out, out_pipe)
            self._writer.set_write_buffer_limits(high=self.write_high_water)
        except ValueError:  # a regular file: plain blocking writes are fine there
            self._writer = _FileWriter(out_pipe)  # type: ignore[assignment]
        self.state = self.dispatcher.connect(self)
        try:
            await self.loop.connect_read_pipe(_In, in_pipe)
        except ValueError:  # a regular file: read it in a thread
            reader = _In()
            self.loop.run_in_executor(None, self._read_file, in_pipe, reader)
        await self.done.wait()

    def _read_file(self, pipe: Any, reader: Any) -> None:
        while chunk := pipe.read(1 << 20):
            self.loop.call_soon_threadsafe(self._on_data, reader, chunk)
        self.loop.call_soon_threadsafe(self.done.set)

    def _on_data(self, reader: Any, data: bytes) -> None:
        assert self.state is not None
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                if not reader.discarding:
                    reader.buf += data[start:]
                    if len(reader.buf) > self.max_message_bytes:
                        reader.buf.clear()
                        reader.discarding = True
                        self._too_long()
                return
            piece = data[start:nl]
            start = nl + 1
            if reader.discarding:
                reader.discarding = False
                continue
            if reader.buf:
                reader.buf += piece
                line = bytes(reader.buf)
                reader.buf.clear()
            else:
                line = piece
            if len(line) > self.max_message_bytes:
                self._too_long()
            elif line.strip():
                self.dispatcher.handle_text(self.state, line)

    def _too_long(self) -> None:
        assert self.state is not None
        err = ProtocolError(PARSE_ERROR, f"message longer than {self.max_message_bytes} bytes")
        self.state.send(error_response(None, err))


class _FileWriter:
    """The write side when stdout is a regular file (no backpressure needed)."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    def write(self, data: bytes) -> None:
        self.pipe.write(data)

    def is_closing(self) -> bool:
        return False


async def _serve_stdio(config: Any = None) -> int:
    loop = asyncio.get_running_loop()
    # Keep the protocol's stdout to ourselves: anything else printing goes to stderr.
    proto_out = os.dup(1)
    os.dup2(2, 1)
    built = build_server(loop, config, server_name="codex-exec serve", watchdog_grace=1.0)
    table, dispatcher = built.table, built.dispatcher
    server = StdioServer(table, dispatcher, config=config)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, server.done.set)
    try:
        await server.serve(os.dup(0), proto_out)
    finally:
        if server.state is not None:
            dispatcher.disconnect(server.state)
        await table.shutdown()
        built.close()
    return 0


CONFIG_FILE = "codex_exec_serve_config"


class ServeApp(JupyterApp):
    """``codex-exec serve``: every trait of the table and server is settable, e.g.
    ``codex-exec serve --ProcessTable.retained_bytes=4194304`` or a config file.

    A :class:`JupyterApp`, so it reads its config file the way every Jupyter command
    does: ``codex_exec_serve_config.py`` (or ``.json``) in each directory of the Jupyter
    config path (``jupyter --paths``), or the file given with ``--config``.
    """

    name = "codex-exec-serve"
    description = (
        "Serve the codex-exec protocol on stdin/stdout.\n\n"
        f"Configuration: {CONFIG_FILE}.py (or .json) in any directory of the Jupyter "
        "config path (`jupyter --paths`; e.g. ~/.jupyter), or --config=FILE; command-line "
        "options win over the file."
    )
    classes = [ProcessTable, StdioServer, SessionConfig]
    aliases = {**JupyterApp.aliases, "log-level": "Application.log_level"}

    @default("config_file_name")
    def _config_file_name_default(self) -> str:
        return CONFIG_FILE

    def start(self) -> int:
        return asyncio.run(_serve_stdio(self.config))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    app = ServeApp()
    app.initialize(argv)
    return app.start()
