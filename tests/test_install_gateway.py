"""`codex-exec install --enterprise-gateway` and the gateway launcher's arguments.

The launcher itself runs for real, started by Enterprise Gateway over SSH, in
tests/browser/test_deploy_gateway.py; here are the parts that need no gateway.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from codex_exec_kernel.gateway_launcher import parse_args


def run_install(tmp_path: Path, *options: str) -> dict:
    subprocess.run(
        [sys.executable, "-m", "codex_exec_kernel", "install", "--prefix", str(tmp_path),
         "--name", "cx-eg", *options],
        check=True, capture_output=True,
    )  # fmt: skip
    return json.loads((tmp_path / "share/jupyter/kernels/cx-eg/kernel.json").read_text())


def test_install_enterprise_gateway_kernelspec(tmp_path):
    spec = run_install(
        tmp_path, "--enterprise-gateway", "--kernel-python", "/opt/k/bin/python",
        "--launcher", "/opt/eg/launch_ipykernel.py", "--remote-hosts", "h1,h2",
    )  # fmt: skip
    assert spec["argv"][:5] == ["/opt/k/bin/python", "-m", "codex_exec_kernel.gateway_launcher",
                                "--launcher", "/opt/eg/launch_ipykernel.py"]  # fmt: skip
    for placeholder in ("{kernel_id}", "{response_address}", "{public_key}", "{port_range}"):
        assert placeholder in spec["argv"]
    assert "{connection_file}" not in spec["argv"]
    proxy = spec["metadata"]["process_proxy"]
    assert proxy["class_name"].endswith("distributed.DistributedProcessProxy")
    assert proxy["config"] == {"remote_hosts": "h1,h2"}
    assert spec["metadata"]["codex_exec"] is True


def test_install_without_the_option_is_the_local_kernelspec(tmp_path):
    spec = run_install(tmp_path)
    assert spec["argv"][-2:] == ["-f", "{connection_file}"]
    assert "process_proxy" not in spec["metadata"]


def test_launcher_accepts_both_argument_spellings():
    args = parse_args([
        "--RemoteProcessProxy.kernel-id", "k1", "--public-key", "pk", "--port-range", "0..0",
        "--kernel-class-name", "x.Y", "--spark-context-initialization-mode", "none",
        "--Kernel.foo=1",
    ])  # fmt: skip
    assert (args.kernel_id, args.public_key, args.port_range) == ("k1", "pk", "0..0")
    assert args.kernel_args == ["--Kernel.foo=1"]


def test_launcher_requires_kernel_id_and_public_key(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--public-key", "pk"])
    assert "kernel-id is required" in capsys.readouterr().err


def test_launcher_says_where_the_gateway_script_is_missing(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "codex_exec_kernel.gateway_launcher", "--launcher",
         str(tmp_path / "nope.py"), "--kernel-id", "k", "--public-key", "pk"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode != 0
    assert "launch_ipykernel.py not found" in out.stderr
