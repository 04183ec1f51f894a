"""What a ``%exec`` hands back: ``ExecResult``, and the error that fails a cell."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ExecResult:
    """The outcome of ``%exec --capture``: the whole output, however long, and the status."""

    command: str
    exit_code: int | None
    stdout: str
    stderr: str
    process_id: str
    signal: str | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def __repr__(self) -> str:
        def short(text: str) -> str:
            return repr(text if len(text) <= 60 else text[:57] + "...")

        return (
            f"ExecResult(exit_code={self.exit_code}, stdout={short(self.stdout)}, "
            f"stderr={short(self.stderr)}, process_id={self.process_id!r})"
        )


class ExecFailed(Exception):
    """Raised by ``%exec`` when the command fails, so "Run All" and nbclient stop.

    Shows as one clear line instead of a traceback through the magic's internals.
    """

    def __init__(self, message: str, result: ExecResult | None = None) -> None:
        super().__init__(message)
        self.result = result

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31mExecFailed\x1b[0m: {self}"]
