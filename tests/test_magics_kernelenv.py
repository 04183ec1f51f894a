"""The kernel's environment and directory for what the kernel starts (kernelenv.py).

A kernel runs from a fresh venv that is NOT on the kernel's PATH (as when Jupyter
runs from a system Python and the kernelspec names a venv's python): ``%exec pip``
must install where ``import`` finds it, a login shell (the Kernel Terminal's) must
keep the user's start-up files and still end up in the kernel's environment, and new
processes start in the kernel's current directory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from jupyter_client import KernelManager
from kernel_helpers import RawComm, ready_client
from nbclient import NotebookClient

SERVER_PATH = "/usr/local/bin:/usr/bin:/bin"  # what a server's PATH may be: no venv on it
KERNEL = "codex-venv-probe"


def make_wheel(directory: Path) -> Path:
    """A minimal pure-Python wheel, made by hand (no build backend, no network)."""
    name, version = "codexnativeprobe", "1.0"
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": b"VALUE = 42\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return wheel


@pytest.fixture(scope="module")
def venv_kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A venv with pip whose python runs our kernel (our packages through a .pth file),
    and a kernelspec for it in a private JUPYTER_PATH."""
    root = tmp_path_factory.mktemp("venvkernel")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    ours = [p for p in site.getsitepackages() if os.path.isdir(p)]
    # addsitedir also runs the .pth files there (our editable install is one)
    lines = [f"import site; site.addsitedir({p!r})" for p in ours]
    Path(purelib, "codex_exec_test_parent.pth").write_text("\n".join(lines) + "\n")
    spec_dir = root / "share" / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "codex_exec_kernel.launcher", "-f", "{connection_file}"],
        "display_name": "venv probe", "language": "python",
    }))  # fmt: skip
    home = root / "home"
    home.mkdir()
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(root / "share" / "jupyter")
    try:
        yield {"venv": str(venv), "python": str(python), "home": str(home), "root": str(root)}
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = old


def kernel_env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PATH=SERVER_PATH, HOME=home, SHELL="/bin/bash")
    return env


def run_cells(*sources: str, home: str, cwd: str | None = None) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    km = KernelManager(kernel_name=KERNEL)
    client = NotebookClient(nb, km=km, allow_errors=True, timeout=180)
    with client.setup_kernel(env=kernel_env(home), cwd=cwd):
        client.execute()
    return nb


def text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for o in cell.outputs:
        if o["output_type"] == "stream":
            parts.append(o["text"])
        elif o["output_type"] == "error":
            parts.append(f"{o['ename']}: {o['evalue']}")
    return "".join(parts)


def test_pip_installs_where_import_finds_it(venv_kernel: dict[str, str], tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    assert shutil.which("python", path=SERVER_PATH) != venv_kernel["python"]
    nb = run_cells(
        "%exec which python; echo VENV=$VIRTUAL_ENV",
        f"%exec pip install --no-index --no-deps --quiet --disable-pip-version-check {wheel}",
        "import codexnativeprobe; print(codexnativeprobe.VALUE)",
        "%config KernelEnvironment.activate = False\n%exec --allow-fail which python",
        home=venv_kernel["home"],
    )  # fmt: skip
    c = nb.cells
    assert text(c[0]) == f"{venv_kernel['venv']}/bin/python\nVENV={venv_kernel['venv']}\n"
    assert "Error" not in text(c[1]), text(c[1])
    assert text(c[2]) == "42\n"
    assert venv_kernel["venv"] not in text(c[3])  # the trait turns it off


def test_new_processes_start_in_the_kernels_current_directory(
    venv_kernel: dict[str, str], tmp_path: Path
) -> None:
    here, there = tmp_path / "launch", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    km = KernelManager(kernel_name=KERNEL)
    km.start_kernel(env=kernel_env(venv_kernel["home"]), cwd=str(here))
    kc = ready_client(km)
    try:
        raw = RawComm(kc, handshake=False)
        first = raw.request("initialize", {"clientName": "t"})
        raw.notify("initialized", {})
        assert first["environment"]["cwd"] == str(here)
        kc.execute_interactive(f"%cd {there}", timeout=30)
        for pid, params in (("a", {}), ("b", {"cwd": str(here)})):
            raw.request("process/start", {"argv": ["pwd"], "processId": pid, **params})
            raw.wait_note(lambda n, p=pid: n["method"] == "process/closed"
                          and n["params"]["processId"] == p)  # fmt: skip
        assert raw.output_of("a") == f"{there}\n".encode()  # follows %cd
        assert raw.output_of("b") == f"{here}\n".encode()  # an explicit cwd wins
        reply = kc.execute_interactive("%exec pwd", timeout=30)
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


LOGIN_FILES = {
    "bash": {".bash_profile": "PATH=/usr/bin:/bin; export PATH\nexport MARK=from-profile\n"},
    "zsh": {
        ".zprofile": "path=(/usr/bin /bin)\n",
        ".zshrc": "export MARK=from-zshrc\n",
    },
}


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_login_shell_keeps_user_startup_then_kernel_env(
    venv_kernel: dict[str, str], tmp_path: Path, shell: str
) -> None:
    path = shutil.which(shell)
    if path is None:
        pytest.skip(f"{shell} is not installed")
    home = tmp_path / "home"
    home.mkdir()
    for name, body in LOGIN_FILES[shell].items():
        (home / name).write_text(body)
    km = KernelManager(kernel_name=KERNEL)
    km.start_kernel(env=kernel_env(str(home)), cwd=str(tmp_path))
    kc = ready_client(km)
    try:
        raw = RawComm(kc)
        raw.request("process/start", {"argv": [path, "-l"], "processId": "t", "tty": True})
        probe = ('python -c "import sys; print(\'PREFIX=\' + sys.prefix)"; '
                 'echo "MARK=$MARK"; exit\n')  # fmt: skip
        chunk = base64.b64encode(probe.encode()).decode()
        raw.request("process/write", {"processId": "t", "chunk": chunk})
        raw.wait_note(lambda n: n["method"] == "process/closed", timeout=60)
        out = raw.output_of("t").decode("utf-8", "replace")
        assert f"PREFIX={venv_kernel['venv']}\r\n" in out, out
        assert f"MARK=from-{'profile' if shell == 'bash' else 'zshrc'}\r\n" in out, out
        listed = raw.request("process/list", {})["processes"]
        assert [p["argv"] for p in listed if p["processId"] == "t"] == [[path, "-l"]]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
