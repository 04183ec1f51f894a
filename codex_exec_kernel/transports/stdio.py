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

from ..backend import grow_pipe
from ..dispatcher import ConnectionState, Dispatcher
from ..protocol import PARSE_ERROR, ProtocolError, encode_line, error_response, output_line
from ..server import build_server
from ..sessions.config import SessionConfig
from ..table import ProcessTable

log = logging.getLogger("codex_exec_kernel")

MiB = 1024 * 1024


class StdioServer(Configurable):
    """Serves one connection on a pair of pipes."""

    max_message_bytes = Int(
        12 * MiB,
        config=True,
        help="Longest input line accepted; longer ones are refused. Fits the largest "
        "process/write (8 MiB, base64); parsing a longer line would hold the loop.",
    )
    write_high_water = Int(
        4 * MiB,
        config=True,
        help="Output buffered for a peer that does not read; past it the processes it "
        "follows pause and no more requests are read until it drains.",
    )
    stdout_pipe_bytes = Int(
        1 * MiB,
        config=True,
        help="Capacity asked for stdout when it is a pipe (F_SETPIPE_SZ; 0 keeps the "
        "system's 64 KiB). One 64 KiB chunk is an 87 KiB line: with a pipe smaller than a "
        "few lines, server and peer take turns on every message.",
    )
    max_requests_in_flight = Int(
        16,
        config=True,
        help="Requests still waiting for their answer (process/read with waitMs, "
        "session/*); past it no more requests are read until one is answered.",
    )

    max_message_items = Int(
        65536,
        config=True,
        help="Most JSON values in one input line (counted by its commas before it is "
        "parsed); a 12 MiB line of a million small keys took a second to parse. An "
        "8 MiB write is one string and never comes close.",
    )

    def __init__(self, table: ProcessTable, dispatcher: Dispatcher, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.dispatcher = dispatcher
        self.loop = table.loop
        self.done = asyncio.Event()
        self.state: ConnectionState | None = None
        self._writer: asyncio.WriteTransport | None = None
        self._input: asyncio.ReadTransport | None = None
        self._buf = bytearray()  # input not handled yet: a partial line, or lines held back
        self._scanned = 0  # bytes of _buf known to hold no newline
        self._discarding = False  # skipping the rest of a line that is too long
        self._output_full = False

    # Connection protocol ---------------------------------------------------
    binary = False

    def send(self, message: dict[str, Any], buffers: list[bytes]) -> None:
        if self._writer is None or self._writer.is_closing():
            return
        self._writer.write(encode_line(message))

    def send_output(self, process_id: str, seq: int, stream: str | None, data: bytes) -> None:
        """``process/output`` built straight from the chunk (dispatcher's fast path)."""
        if self._writer is None or self._writer.is_closing():
            return
        self._writer.write(output_line(process_id, seq, stream, data))

    # ------------------------------------------------------------------------
    async def serve(self, in_fd: int, out_fd: int) -> None:
        server = self

        class _Out(asyncio.Protocol):
            def pause_writing(self) -> None:
                server._set_output_full(True)

            def resume_writing(self) -> None:
                server._set_output_full(False)

            def connection_lost(self, exc: Exception | None) -> None:
                server.done.set()

        class _In(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                server._input = transport  # type: ignore[assignment]

            def data_received(self, data: bytes) -> None:
                server._on_data(data)

            def eof_received(self) -> bool:
                server.done.set()
                return False

            def connection_lost(self, exc: Exception | None) -> None:
                server.done.set()

        grow_pipe(out_fd, self.stdout_pipe_bytes)
        out_pipe = os.fdopen(out_fd, "wb", buffering=0)
        in_pipe = os.fdopen(in_fd, "rb", buffering=0)
        try:
            self._writer, _ = await self.loop.connect_write_pipe(_Out, out_pipe)
            self._writer.set_write_buffer_limits(high=self.write_high_water)
        except ValueError:  # a regular file: plain blocking writes are fine there
            self._writer = _FileWriter(out_pipe)  # type: ignore[assignment]
        self.state = self.dispatcher.connect(self)
        self.state.on_request_done = self._handle_lines
        try:
            await self.loop.connect_read_pipe(_In, in_pipe)
        except ValueError:  # a regular file: read it in a thread
            self.loop.run_in_executor(None, self._read_file, in_pipe)
        await self.done.wait()

    def _read_file(self, pipe: Any) -> None:
        while chunk := pipe.read(1 << 20):
            self.loop.call_soon_threadsafe(self._on_data, chunk)
        self.loop.call_soon_threadsafe(self.done.set)

    # Input: lines are handled one by one while the peer reads what we write. When our
    # output buffer passes ``write_high_water`` (the peer stopped reading stdout), the
    # processes this connection follows pause (congestion) and we stop taking requests:
    # the lines already read wait in ``_buf`` and the pipe is not read, so no request
    # can make us queue more than one more answer. Both resume when the buffer drains.
    def _set_output_full(self, full: bool) -> None:
        self._output_full = full
        if self.state is not None:
            self.state.set_congested(full)
        if not full:
            self._handle_lines()

    def _holding(self) -> bool:
        """Whether requests must wait: the peer is not reading, or too many are pending."""
        assert self.state is not None
        return self._output_full or self.state.in_flight >= self.max_requests_in_flight

    def _on_data(self, data: bytes) -> None:
        if self._discarding:
            nl = data.find(b"\n")
            if nl < 0:
                return
            self._discarding = False
            data = data[nl + 1 :]
        self._buf += data
        self._handle_lines()

    def _handle_lines(self) -> None:
        assert self.state is not None
        buf = self._buf
        start = 0
        while not self._holding():
            nl = buf.find(b"\n", max(start, self._scanned))
            if nl < 0:
                break
            line = buf[start:nl]  # one copy; json.loads takes a bytearray
            start = nl + 1
            if len(line) > self.max_message_bytes:
                self._too_long()
            elif line.count(b",") >= self.max_message_items:
                self._refuse(f"message of more than {self.max_message_items} JSON values")
            elif line.strip():
                self.dispatcher.handle_text(self.state, line)
        del buf[:start]
        holding = self._holding()
        self._scanned = 0 if holding else len(buf)
        if len(buf) > self.max_message_bytes and buf.find(b"\n") < 0:
            buf.clear()  # one line too long to hold: skip to its end
            self._scanned = 0
            self._discarding = True
            self._too_long()
        if self._input is not None:
            if holding:
                self._input.pause_reading()
            elif not self._input.is_reading():
                self._input.resume_reading()

    def _too_long(self) -> None:
        self._refuse(f"message longer than {self.max_message_bytes} bytes")

    def _refuse(self, why: str) -> None:
        """A line we do not parse (it would hold the loop): ``-32700``, then go on."""
        assert self.state is not None
        self.state.send(error_response(None, ProtocolError(PARSE_ERROR, why)))


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
