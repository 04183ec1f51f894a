"""The output path's speed settings (issue 15): the stdio server's stdout pipe, the
children's pipes that grow when a flood fills them, and the stdio line built straight
from a chunk's bytes. Speed itself is measured in benchmarks/bench_stdio.py."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import os
import subprocess

import pytest
from commands import CODEX_EXEC
from waiting import scaled

from codex_exec_kernel.backend import F_GETPIPE_SZ
from codex_exec_kernel.protocol import (
    SpawnSpec,
    encode_bytes,
    encode_line,
    output_line,
    output_notification,
)
from codex_exec_kernel.table import ProcessTable

MiB = 1 << 20


@pytest.mark.parametrize(
    "data", [b"", b"a", b"\x00\xff" * 3, os.urandom(256 * 1024 + 7)], ids=len
)
@pytest.mark.parametrize("process_id", ["proc-1", 'quo"te\\ \u00e9 \U0001f600'])
def test_output_line_is_the_line_encode_line_makes(process_id: str, data: bytes) -> None:
    message = output_notification(process_id, 7, "stdout", encode_bytes(data, None))
    line = output_line(process_id, 7, "stdout", data)
    assert line == encode_line(message)
    parsed = json.loads(line)
    assert parsed["params"]["processId"] == process_id
    assert base64.b64decode(parsed["params"]["chunk"], validate=True) == data


def _serve_stdout_pipe_size(*options: str) -> int:
    """Start ``codex-exec serve``, finish the handshake, and read its stdout's capacity."""
    proc = subprocess.Popen([CODEX_EXEC, "serve", *options], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, bufsize=0)  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b'{"id":1,"method":"initialize","params":{"clientName":"t"}}\n')
        # The answer comes after the server set its pipe up: the size is final by then.
        assert json.loads(proc.stdout.readline())["id"] == 1
        return int(fcntl.fcntl(proc.stdout.fileno(), F_GETPIPE_SZ))
    finally:
        proc.stdin.close()
        proc.wait(scaled(10))
        proc.stdout.close()


def test_serve_enlarges_its_stdout_pipe() -> None:
    assert _serve_stdout_pipe_size() == MiB  # StdioServer.stdout_pipe_bytes
    assert _serve_stdout_pipe_size("--StdioServer.stdout_pipe_bytes=0") == 64 * 1024


def _pipe_sizes(pipe_bytes: int | None) -> dict[str, int]:
    """Stdout pipe capacity of a child that flooded and one that stayed quiet."""

    async def run() -> dict[str, int]:
        table = ProcessTable(loop=asyncio.get_running_loop(), retained_bytes=4 * MiB)
        if pipe_bytes is not None:
            table.pipe_bytes = pipe_bytes
        flood = table.start(SpawnSpec(["sh", "-c", "head -c 2000000 /dev/zero; exec sleep 30"]))
        quiet = table.start(SpawnSpec(["sleep", "30"]))
        async def flooded() -> None:
            while sum(len(e.data) for e in flood.events) < 2_000_000:
                if flood.closed:
                    raise AssertionError("the flooding child ended early")
                await flood.wait_event()

        try:
            await asyncio.wait_for(flooded(), scaled(20))
            return {
                name: fcntl.fcntl(p.backend.child.stdout_fd, F_GETPIPE_SZ)  # type: ignore[attr-defined]
                for name, p in (("flood", flood), ("quiet", quiet))
            }
        finally:
            await table.shutdown(0.5)

    return asyncio.run(run())


def test_a_flooding_pipe_grows_an_idle_one_does_not() -> None:
    assert _pipe_sizes(None) == {"flood": MiB, "quiet": 64 * 1024}  # ProcessTable.pipe_bytes
    assert _pipe_sizes(0) == {"flood": 64 * 1024, "quiet": 64 * 1024}
