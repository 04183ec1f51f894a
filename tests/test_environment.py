"""The suite's world: a private, empty HOME for every test and every process it starts,
and one test with a realistic ``~/.bashrc`` (Debian's skeleton plus a user's lines)."""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

import pytest
from waiting import scaled

from codex_exec_kernel.client import ExecClient

RC_FILES = (".bashrc", ".profile", ".bash_profile", ".bash_login", ".zshrc", ".inputrc")
PRIVATE = ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME",
           "XDG_RUNTIME_DIR", "IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR",
           "JUPYTER_RUNTIME_DIR")  # fmt: skip


def test_every_test_runs_in_a_private_home(private_home: Path) -> None:
    assert os.environ["HOME"] == str(private_home)
    assert os.environ["HOME"] != pwd.getpwuid(os.getuid()).pw_dir
    assert not [rc for rc in RC_FILES if (private_home / rc).exists()]
    for name in PRIVATE:
        assert os.environ[name].startswith(str(private_home.parent)), name
    for name in ("BASH_ENV", "ENV", "PYTHONSTARTUP", "JUPYTER_PATH"):
        assert name not in os.environ, name


def test_a_kernels_login_shell_sees_the_private_home(private_home: Path) -> None:
    with ExecClient.start() as client:
        out = client.run(["bash", "-lc", 'echo "home=$HOME"'], timeout=scaled(60))
    assert out.stdout.decode().strip() == f"home={private_home}"


def test_kernel_terminal_shell_with_a_realistic_bashrc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Kernel Terminal's ``$SHELL -l`` in a PTY reads the user's ~/.profile and
    ~/.bashrc (Debian's /etc/skel ones, plus what users add)."""
    skel = Path("/etc/skel")
    if not (skel / ".bashrc").exists():
        pytest.skip("no /etc/skel/.bashrc on this system")
    home = tmp_path / "user-home"
    shutil.copytree(skel, home)
    with (home / ".bashrc").open("a") as rc:
        rc.write('\nexport FROM_BASHRC=loaded\nexport PATH="$HOME/.local/bin:$PATH"\n'
                 'alias gs="git status"\nshopt -s histappend\n')  # fmt: skip
    monkeypatch.setenv("HOME", str(home))
    with ExecClient.start() as client:
        shell = client.exec(["/bin/bash", "-l"], tty=True, size=(24, 80))
        shell.write("echo rc-$FROM_BASHRC-$(type -t gs)\nexit\n")
        out = shell.output(timeout=scaled(60))
    assert out.exit_code == 0, out
    assert b"rc-loaded-alias" in out.pty, out.pty.decode(errors="replace")


def test_test_artifacts_go_to_ignored_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Screenshots and browser figures from a test run must not rewrite the tracked
    docs/img/*.png and benchmarks/results/*.json (a clean clone stays clean); only
    `make docs-images` and `make bench` point them there."""
    monkeypatch.delenv("CODEX_EXEC_DOCS_IMG_DIR", raising=False)
    monkeypatch.delenv("CODEX_EXEC_RESULTS_DIR", raising=False)
    import importlib.util
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    spec = importlib.util.spec_from_file_location("browser_conftest",
                                                  root / "tests" / "browser" / "conftest.py")
    assert spec is not None and spec.loader is not None
    browser_conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(browser_conftest)
    for where in (browser_conftest.IMG_DIR / "demo-workspace.png",
                  browser_conftest.RESULTS_DIR / "browser-flood.json"):
        ignored = subprocess.run(["git", "check-ignore", "-q", str(where)], cwd=root)
        assert ignored.returncode == 0, f"{where} is not ignored by git"
