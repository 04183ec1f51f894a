"""``binder/postBuild`` in a fresh venv installs the kernel, the labextension
and the server extension from this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from waiting import scaled

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_binder_postbuild_installs_everything(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bin_dir = venv / "bin"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "VIRTUAL_ENV"))},
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(venv),
        # Keep the user's ~/.jupyter and data dir out of it.
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONNOUSERSITE": "1",
    }
    env.pop("PYTHONPATH", None)

    def run(*cmd: str, timeout: float = 900) -> str:
        done = subprocess.run(
            cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=scaled(timeout)
        )
        assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout + done.stderr

    run(str(bin_dir / "python"), "-m", "pip", "install", "-q", "-r", "binder/requirements.txt")
    run("bash", "binder/postBuild")

    kernels = run(str(bin_dir / "jupyter"), "kernelspec", "list")
    assert "codex-exec" in kernels
    assert str(venv) in kernels.split("codex-exec", 1)[1].splitlines()[0]
    labext = run(str(bin_dir / "jupyter"), "labextension", "list")
    assert "codex-exec-kernel" in labext and "enabled" in labext
    serverext = run(str(bin_dir / "jupyter"), "server", "extension", "list")
    assert "codex_exec_kernel.serverext" in serverext
    default_url = tmp_path / "config" / "jupyter_server_config.d" / "codex-exec-binder.json"
    assert "/lab/workspaces/codex-exec-demo" in default_url.read_text()
    workspace = run(str(bin_dir / "jupyter"), "lab", "workspaces", "export", "codex-exec-demo")
    assert "codex-exec-terminal-demo" in workspace and "examples/demo.ipynb" in workspace
