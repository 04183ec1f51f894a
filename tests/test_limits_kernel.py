"""Bounds of the kernel side (docs/protocol.md, Limits), pushed past and measured."""

from __future__ import annotations

import asyncio

import pytest

from codex_exec_kernel.client import AsyncExecClient

MiB = 1024 * 1024
WINDOW = 4 * MiB  # ProcessTable.flow_control_window
CHUNK = 2 * MiB  # ExecService.coalesce_max_bytes


@pytest.mark.slow
def test_python_client_acks_on_consumption() -> None:
    """Bound: a caller that does not read holds the child at the flow-control window:
    the client's queue stays under window + one chunk, the child blocks (64 MiB of
    output never finishes) and everything arrives once the caller reads."""

    async def go() -> None:
        client = await AsyncExecClient.start()
        try:
            proc = await client.exec(["sh", "-c", "head -c 67108864 /dev/zero; echo end"])
            with pytest.raises(asyncio.TimeoutError):
                await proc.wait(3.0)  # held at the window: it cannot finish unread
            queued = sum(len(c.data) for c in proc._queue._queue if hasattr(c, "data"))
            assert queued <= WINDOW + CHUNK, f"{queued / MiB:.1f} MiB queued unread"
            out = await proc.output(60)
            assert len(out.stdout) == 64 * MiB + 4 and out.exit_code == 0
        finally:
            await client.close()

    asyncio.run(go())


@pytest.mark.slow
def test_sync_client_acks_on_consumption() -> None:
    """The same bound through the sync client (its loop thread acknowledges a chunk
    only when the caller's iteration takes it): a caller that took one chunk and
    stopped holds the child at the window (queued stays under window + two chunks); a
    caller that goes on gets every byte in order."""
    from codex_exec_kernel.client import ExecClient

    with ExecClient.start() as client:
        proc = client.exec(["sh", "-c", "head -c 67108864 /dev/zero; echo end"])
        chunks = iter(proc)
        first = next(chunks)
        with pytest.raises((TimeoutError, asyncio.TimeoutError)):
            proc.wait(3.0)  # held at the window: it cannot finish unread
        unread = sum(len(c.data) for c in proc._proc._queue._queue if hasattr(c, "data"))
        # The table pauses the child once past the window: the chunk that crossed it,
        # plus the one its coalescer had already read, may still come.
        assert unread <= WINDOW + 2 * CHUNK, f"{unread / MiB:.1f} MiB held unread"
        rest = list(chunks)
        data = first.data + b"".join(c.data for c in rest)
        assert len(data) == 64 * MiB + 4 and data.endswith(b"end\n")
        seqs = [first.seq] + [c.seq for c in rest]
        assert seqs == sorted(set(seqs))  # in order, none twice
        assert proc.wait(30) == 0
