"""Start the codex-exec kernel the way Jupyter Enterprise Gateway starts its Python kernels.

Enterprise Gateway's remote process proxies (distributed/SSH, Kubernetes, Docker, YARN)
start a kernel with ``launch_ipykernel.py --RemoteProcessProxy.kernel-id ID
--RemoteProcessProxy.response-address IP:PORT --RemoteProcessProxy.public-key KEY
--RemoteProcessProxy.port-range A..B``. That script picks the ports, writes the
connection file, sends it encrypted back to the gateway, forks a listener for the
gateway's signal/shutdown requests, and then runs a stock ``IPKernelApp``.

This module runs the same contract with *our* kernel app (IOPub that never drops, the
SIGTERM handler, the process table): it loads Enterprise Gateway's own
``launch_ipykernel.py`` (shipped in Enterprise Gateway's kernel images and in its sdist)
and reuses its functions for everything on the wire, so the encryption and the
listener stay exactly what the gateway expects. We do not vendor that file: a
gateway deployment already has it on every kernel host or image.

Two things differ from the stock script, both settable: the address the kernel and
its signal socket bind (``--ip``; the stock script always binds 0.0.0.0) and the
kernel app (always ours).
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import os
import socket
import sys
import uuid
from types import ModuleType

#: Where Enterprise Gateway's kernel images (elyra/kernel-py and friends) keep the script.
IMAGE_LAUNCHER = "/usr/local/bin/kernel-launchers/python/scripts/launch_ipykernel.py"
#: Environment variable naming the script's path (the ``--launcher`` default).
LAUNCHER_ENV = "CODEX_EXEC_EG_LAUNCHER"


def load_eg_launcher(path: str) -> ModuleType:
    """Import Enterprise Gateway's ``launch_ipykernel.py`` as a module (its ``__main__``
    block does not run); needs ``pycryptodomex`` like the script itself."""
    if not os.path.isfile(path):
        raise SystemExit(
            f"codex-exec: Enterprise Gateway's launch_ipykernel.py not found at {path!r}; "
            f"pass --launcher PATH or set {LAUNCHER_ENV} (it is in the gateway's sdist under "
            "etc/kernel-launchers/python/scripts/)"
        )
    spec = importlib.util.spec_from_file_location("_eg_launch_ipykernel", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bind_on(module: ModuleType, host: str) -> None:
    """Make the script's port selection bind ``host`` instead of 0.0.0.0.

    Its ``_select_socket`` is the one place that binds; everything else (port range,
    retries) is the script's own code, called through its module globals."""

    def select_socket(lower_port: int, upper_port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        for _ in range(module.max_port_range_retries + 1):
            try:
                sock.bind((host, module._get_candidate_port(lower_port, upper_port)))
                return sock
            except OSError:
                continue
        sock.close()
        raise RuntimeError(f"no free port on {host} in {lower_port}..{upper_port}")

    module._select_socket = select_socket


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m codex_exec_kernel.gateway_launcher",
        description="Start the codex-exec kernel for Jupyter Enterprise Gateway "
        "(the launch_ipykernel.py contract). Extra arguments go to the kernel app.",
    )
    parser.add_argument(
        "--launcher",
        default=os.environ.get(LAUNCHER_ENV, IMAGE_LAUNCHER),
        help=f"Enterprise Gateway's launch_ipykernel.py (default: ${LAUNCHER_ENV}, "
        f"else {IMAGE_LAUNCHER})",
    )
    parser.add_argument(
        "--ip", default="0.0.0.0",
        help="address the kernel's ports and its signal socket bind (default 0.0.0.0, "
        "as Enterprise Gateway's own launcher; the gateway must reach it)",
    )  # fmt: skip
    for name in ("kernel-id", "response-address", "public-key", "port-range"):
        dest = name.replace("-", "_")
        parser.add_argument(f"--RemoteProcessProxy.{name}", f"--{name}", dest=dest)
    # Accepted for compatibility with the gateway's kernelspecs; Spark/Dask are not set up.
    parser.add_argument("--RemoteProcessProxy.spark-context-initialization-mode",
                        "--spark-context-initialization-mode", dest="init_mode")  # fmt: skip
    parser.add_argument("--RemoteProcessProxy.cluster-type", "--cluster-type",
                        dest="cluster_type")  # fmt: skip
    # The gateway's bootstrap-kernel.sh may pass its KERNEL_CLASS_NAME: our kernel it is.
    parser.add_argument("--kernel-class-name", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if not args.kernel_id:
        parser.error("--RemoteProcessProxy.kernel-id is required")
    if not args.public_key:
        parser.error("--RemoteProcessProxy.public-key is required")
    args.kernel_args = rest
    return args


def main(argv: list[str] | None = None) -> None:
    from jupyter_client.connect import write_connection_file

    args = parse_args(argv)
    eg = load_eg_launcher(args.launcher)
    bind_on(eg, args.ip)
    lower, upper = eg._validate_port_range(args.port_range)
    connection_file = eg.determine_connection_file(None, args.kernel_id)
    shell, iopub, stdin, hb, control = eg._select_ports(5, lower, upper)
    write_connection_file(
        fname=connection_file, ip=args.ip, key=str(uuid.uuid4()).encode(),
        shell_port=shell, iopub_port=iopub, stdin_port=stdin, hb_port=hb, control_port=control,
    )  # fmt: skip
    if args.response_address:
        comm_socket = eg.return_connection_info(
            connection_file, args.response_address, lower, upper, args.kernel_id,
            args.public_key,
        )  # fmt: skip
        if comm_socket:
            # The gateway's signal and shutdown requests arrive here. Forked before the
            # kernel starts any thread; the listener exits when the kernel is gone (the
            # gateway's liveness poll is a signal 0 that then fails).
            listener = multiprocessing.get_context("fork").Process(
                target=eg.server_listener, args=(comm_socket, os.getpid(), "none"), daemon=True
            )
            listener.start()
            comm_socket.close()
    from .kernelapp import CodexExecKernelApp

    try:
        CodexExecKernelApp.launch_instance(
            ["-f", connection_file, f"--ip={args.ip}", *args.kernel_args]
        )
    finally:
        try:
            os.remove(connection_file)
        except OSError:
            pass


if __name__ == "__main__":
    if sys.path and sys.path[0] == "":
        del sys.path[0]
    main()
