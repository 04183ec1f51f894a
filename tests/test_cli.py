"""The ``codex-exec`` console script as installed, called the way the README writes it."""

from __future__ import annotations

import subprocess

from commands import CODEX_EXEC
from waiting import scaled

from codex_exec_kernel import __version__

pytest_plugins = ["sessions_fixtures"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CODEX_EXEC, *args], capture_output=True, text=True,
                          timeout=scaled(60))  # fmt: skip


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"codex-exec {__version__}"


def test_session_create_with_a_command_after_double_dash(session_home: str) -> None:
    """`codex-exec session create -- sleep 5` once printed the top-level usage (exit 2):
    the command's positional overwrote the subcommand's argparse dest."""
    created = run("session", "create", "--id", "doc-sleep", "--", "sleep", "5")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "doc-sleep"
    listed = run("session", "list")
    assert "doc-sleep" in listed.stdout and "sleep 5" in listed.stdout
    assert run("session", "delete", "doc-sleep").returncode == 0


def test_no_command_prints_help_and_unknown_fails() -> None:
    assert "serve" in run().stdout
    bad = run("no-such-command")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
