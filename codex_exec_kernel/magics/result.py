"""What a ``%exec`` hands back: ``ExecResult``, and the error that fails a cell."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from IPython.utils.text import SList


class Output(str):
    """Captured output: a ``str`` that also behaves like IPython's ``SList`` (what ``!cmd``
    returns): iterating gives lines; ``.l``/``.list`` is the ``SList``, ``.n`` the text
    joined by newlines, ``.s`` by spaces, and ``.grep()``, ``.fields()``, ``.sort()``
    work as on an ``SList``. Everything else (``in``, slicing, ``.split()``...) is ``str``.
    """

    __slots__ = ()

    @property
    def l(self) -> SList:  # noqa: E743  (IPython's name)
        return SList(self.splitlines())

    list = l

    @property
    def n(self) -> str:
        return "\n".join(self.splitlines())

    @property
    def s(self) -> str:
        return " ".join(self.splitlines())

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self.splitlines())

    def grep(self, *args: Any, **kwargs: Any) -> SList:
        return self.l.grep(*args, **kwargs)

    def fields(self, *args: Any) -> SList:
        return self.l.fields(*args)

    def sort(self, *args: Any, **kwargs: Any) -> SList:
        return self.l.sort(*args, **kwargs)


@dataclass
class ExecResult:
    """The outcome of ``%exec --capture``: the whole output, however long, and the status.

    Returned for any exit status, as ``subprocess.run`` does; :meth:`check` raises like
    ``CompletedProcess.check_returncode()``.
    """

    command: str
    exit_code: int | None
    stdout: Output
    stderr: Output
    process_id: str
    signal: str | None = None
    timed_out: bool = False

    def __post_init__(self) -> None:
        self.stdout = Output(self.stdout)
        self.stderr = Output(self.stderr)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def returncode(self) -> int | None:
        """``subprocess``'s name for :attr:`exit_code` (negative signal numbers aside)."""
        return self.exit_code

    def check(self) -> ExecResult:
        """Raise ``subprocess.CalledProcessError`` unless the exit status is 0; else self."""
        if self.exit_code != 0:
            raise subprocess.CalledProcessError(
                -1 if self.exit_code is None else self.exit_code,
                self.command,
                output=str(self.stdout),
                stderr=str(self.stderr),
            )
        return self

    def __repr__(self) -> str:
        def short(text: str) -> str:
            return repr(str(text) if len(text) <= 60 else text[:57] + "...")

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
