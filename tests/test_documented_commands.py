"""Every command block of README.md and docs/*.md, run as written.

Shell blocks (```bash) run in bash with the venv's ``bin/`` first on ``PATH`` (the
venv "activated", as after the README's setup) and the suite's private ``HOME``.
Python blocks run where they are meant to: ``%exec`` snippets as notebook cells in a
real ``codex-exec`` kernel, the client snippet as a script against a real kernel.

Each block is known by its file and first line. A block must have a runner here or a
reason in :data:`NOT_RUN`; a new block with neither fails the suite, so documentation
cannot grow commands that nobody runs. Placeholders that stand for "your command" are
replaced by a runnable stand-in listed in :data:`STAND_INS`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from commands import BIN
from jupyter_client.manager import KernelManager
from kernel_helpers import blocking_client, start_kernel
from waiting import scaled

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Fenced blocks that hold commands; unlabelled ones are file trees and synopses.
LANGUAGES = {"bash", "sh", "shell", "console", "python", "ipython"}


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    text: str

    @property
    def key(self) -> tuple[str, str]:
        """(file relative to the checkout, first line): stable while the docs are edited."""
        return str(self.path.relative_to(ROOT)), self.text.splitlines()[0].strip()

    def __str__(self) -> str:
        return f"{self.key[0]}:{self.line}"


def documented_blocks() -> list[Block]:
    fence = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
    blocks = []
    for path in DOCUMENTS:
        text = path.read_text()
        for m in fence.finditer(text):
            if m.group(1) in LANGUAGES:
                line = text.count("\n", 0, m.start()) + 1
                blocks.append(Block(path, line, m.group(1), m.group(2)))
    return blocks


#: Blocks the suite does not run, and why (each is covered another way).
NOT_RUN: dict[tuple[str, str], str] = {
    ("README.md", "make lab     # set everything up, open JupyterLab with the kernel and the "
     "Kernel Terminal"): "`make lab` serves JupyterLab until interrupted and `make test` is "
    "this suite; tests/browser/test_panel.py::test_demo_workspace_opens_notebook_and_terminal"
    " opens the same workspace in the same way",
    ("docs/sessions.md", "from codex_exec_kernel.protocol import SpawnSpec"):
    "an API overview (placeholders such as `id`, `await` outside a coroutine); every call is "
    "exercised by tests/test_sessions.py",
    ("docs/terminal-panel.md", "display({"): "a schema illustration with elided values "
    "(`…`); tests/browser/test_terminal.py::test_terminal_mime_bundle_opens_panel displays "
    "a real bundle",
    ("docs/stock-kernel.md", "# ~/.ipython/profile_default/codex_exec_kernel_config.py"):
    "a config file, not a script; tests/test_history.py::test_the_switch_can_be_turned_off "
    "writes this line into that file",
    ("README.md", "codex-exec connect --existing kernel-1234.json            # ZeroMQ, as "
     "jupyter console"): "the three routes name placeholder servers and kernels; "
    "tests/test_connect_suite.py runs the stdio suite through each route against real ones",
    ("docs/deploy.md", 'c.JupyterHub.ip = "127.0.0.1"; c.JupyterHub.port = 8000'): "a "
    "config file, not a script; tests/browser/test_deploy_hub.py writes the same settings and "
    "runs the hub with them",
    ("docs/deploy.md", "from tornado.websocket import WebSocketProtocol13"): "a config "
    "file for Enterprise Gateway, not a script; tests/browser/test_deploy_gateway.py writes "
    "it and runs the gateway with it",
    ("docs/terminal-panel.md", "cd labextension"): "rebuilds the labextension from npm and "
    "runs the browser suite: `make setup` and `make test` do exactly that",
}  # fmt: skip

#: Placeholders of the docs ("your command") and the runnable stand-ins used for them.
STAND_INS = {
    "pip install -U something": "pip --version",  # no network install from a test
    '"kernel-1234.json"': "CONNECTION_FILE",  # a real kernel's connection file
}


def _cells(text: str) -> list[str]:
    """Split a notebook snippet into cells: a ``%%`` cell magic starts a new cell."""
    cells: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.startswith("%%") and cells[-1]:
            cells.append([])
        cells[-1].append(line)
    return ["\n".join(c) for c in cells if any(s.strip() for s in c)]


def _stand_in(text: str) -> str:
    for placeholder, stand_in in STAND_INS.items():
        text = text.replace(placeholder, stand_in)
    return text


def _activated_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "VIRTUAL_ENV": str(BIN.parent)}  # fmt: skip


def run_shell(block: Block, workdir: Path) -> None:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.text], cwd=ROOT, env=_activated_env(),
        capture_output=True, text=True, timeout=scaled(300),
    )  # fmt: skip
    assert done.returncode == 0, f"{block} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def notebook_workdir(workdir: Path) -> None:
    """What the README's notebook snippets expect around them: a git checkout with CSV
    files and a ``train.py`` that prints for a moment and ends."""
    (workdir / "a.csv").write_text("x,y\n1,2\n")
    (workdir / "b.csv").write_text("x,y\n3,4\n5,6\n")
    (workdir / "train.py").write_text(
        "import time\nfor epoch in range(3):\n    print('epoch', epoch, flush=True)\n"
        "    time.sleep(0.2)\n"
    )
    (workdir / "Makefile").write_text("all:\n\techo built-ok\n")
    subprocess.run(["git", "init", "-q", str(workdir)], check=True)


def start_kernel_in(workdir: Path) -> KernelManager:
    return start_kernel("codex-exec", cwd=str(workdir))


def run_notebook_cells(block: Block, workdir: Path) -> None:
    notebook_workdir(workdir)
    km = start_kernel_in(workdir)
    try:
        kc = blocking_client(km)
        try:
            for cell in _cells(_stand_in(block.text)):
                reply = kc.execute_interactive(cell, timeout=scaled(120),
                                               output_hook=lambda msg: None)  # fmt: skip
                assert reply["content"]["status"] == "ok", (block, cell, reply["content"])
        finally:
            kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)


def run_client_script(block: Block, workdir: Path) -> None:
    notebook_workdir(workdir)
    km = start_kernel_in(workdir)
    try:
        script = f"CONNECTION_FILE = {km.connection_file!r}\n" + _stand_in(block.text)
        done = subprocess.run([sys.executable, "-c", script], cwd=workdir,
                              env=_activated_env(), capture_output=True, text=True,
                              timeout=scaled(120))  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "built-ok" in done.stdout and "exit 0" in done.stdout, done.stdout
    finally:
        km.shutdown_kernel(now=True)


RUNNERS: dict[str, Callable[[Block, Path], None]] = {
    "bash": run_shell,
    "sh": run_shell,
    "shell": run_shell,
}


def runner_for(block: Block) -> Callable[[Block, Path], None]:
    if block.language in RUNNERS:
        return RUNNERS[block.language]
    if "ExecClient.connect(" in block.text:
        return run_client_script
    if re.search(r"^%", block.text, re.M):
        return run_notebook_cells
    raise AssertionError(f"{block}: no runner for this block; add one or a NOT_RUN reason")


BLOCKS = documented_blocks()


def test_the_readme_has_commands_to_run() -> None:
    readme = [b for b in BLOCKS if b.path.name == "README.md" and b.key not in NOT_RUN]
    assert len(readme) >= 5, readme
    assert all(key in {b.key for b in BLOCKS} for key in NOT_RUN), "a NOT_RUN entry is stale"


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_documented_block_runs(block: Block, tmp_path: Path) -> None:
    if block.key in NOT_RUN:
        pytest.skip(NOT_RUN[block.key])
    runner_for(block)(block, tmp_path)


def test_cells_split_at_cell_magics() -> None:
    text = textwrap.dedent("""\
        %exec ls
        r = 1
        %%exec bash
        echo hi
    """)
    assert _cells(text) == ["%exec ls\nr = 1", "%%exec bash\necho hi"]
