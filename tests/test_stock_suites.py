"""Jupyter's own kernel test suites, run against ``codex-exec``.

* ipykernel's kernel-level tests (message spec, execution, interrupts, subshells,
  debugger, event loops), from the sdist of the **installed** ipykernel version;
* ``jupyter_kernel_test``'s IPython kernel tests (``test_ipykernel.py`` of its sdist).

Both come from PyPI through ``pip download`` (the ordinary client) into
``build/stock-suites/`` (ignored; reused by later runs, so a machine that ran the suite
once needs no network; ``CODEX_EXEC_STOCK_SDISTS`` may name a directory holding the
sdists instead). They run unmodified in a child pytest; the ``switch_kernel`` plugin
(tests/stock/) changes only the kernel name they start.

The rule: every test that passes for ``python3`` passes for ``codex-exec``. A test
that fails for ``codex-exec`` is run again for ``python3``; it may fail only if it
fails there too, or if :data:`DIFFERENCES` says why it differs.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from waiting import scaled

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "stock-suites"
PLUGIN_DIR = Path(__file__).resolve().parent / "stock"

#: ipykernel's test modules that talk to a kernel process (the others test ipykernel's
#: classes in-process, where no kernel name is involved).
IPYKERNEL_KERNEL_LEVEL = [
    "tests/test_message_spec.py",
    "tests/test_kernel.py",
    "tests/test_async.py",
    "tests/test_eventloop.py",
    "tests/test_subshells.py",
    "tests/test_debugger.py",
]
#: Tests not run, with the reason (the same for python3: not a kernel difference).
DESELECTED = {
    "tests/test_subshells.py::test_run_concurrently_sequence": "reads pytest-cov's --cov "
    "option; pytest-cov is not among our test extras",
}
#: Tests whose outcome differs from python3 on purpose, with the reason. Empty: since
#: the kernel reports ipykernel's `implementation` (see docs/stock-kernel.md) none do.
DIFFERENCES: dict[str, str] = {}

INI = """[pytest]
asyncio_mode = auto
timeout = {timeout}
"""


@dataclass
class Suite:
    dist: str  # PyPI name
    members: tuple[str, ...]  # paths in the sdist to extract (tests, license)
    run: tuple[str, ...]  # test paths inside the extracted tree


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def sdist_of(dist: str, version: str) -> Path:
    """The sdist of ``dist==version``: from CODEX_EXEC_STOCK_SDISTS, the cache, or PyPI."""
    for where in (os.environ.get("CODEX_EXEC_STOCK_SDISTS"), str(CACHE / "sdist")):
        if where:
            found = sorted(Path(where).glob(f"{dist.replace('-', '_')}-{version}.tar.gz"))
            found += sorted(Path(where).glob(f"{dist}-{version}.tar.gz"))
            if found:
                return found[0]
    (CACHE / "sdist").mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
         "--no-binary", dist, f"{dist}=={version}", "-d", str(CACHE / "sdist")],
        capture_output=True, text=True, timeout=scaled(300),
    )  # fmt: skip
    if done.returncode != 0:
        _unavailable(f"cannot download the {dist} {version} sdist: {done.stderr[-500:]}")
    return sdist_of(dist, version)


def extracted(suite: Suite) -> Path:
    version = importlib.metadata.version(suite.dist)
    tree = CACHE / f"{suite.dist}-{version}"
    if not (tree / suite.run[0]).exists():
        with tarfile.open(sdist_of(suite.dist, version)) as tar:
            top = tar.getnames()[0].split("/")[0]
            wanted = [m for m in tar.getmembers()
                      if any(m.name == f"{top}/{p}" or m.name.startswith(f"{top}/{p}/")
                             for p in suite.members)]  # fmt: skip
            for member in wanted:
                member.name = member.name.split("/", 1)[1]
            tar.extractall(tree, members=wanted, filter="data")
    (tree / "pytest.ini").write_text(INI.format(timeout=int(scaled(300))))
    return tree


def outcomes(junit: Path) -> dict[str, str]:
    """``{"tests/test_x.py::test_y[param]": "passed|failed|skipped"}`` from a JUnit file."""
    result = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "")
        parts = module.split(".")
        # "tests.test_kernel" or "test_ipykernel.IPyKernelTests" (unittest classes)
        path = "/".join(parts[:2]) + ".py" if parts[0] == "tests" else parts[0] + ".py"
        cls = "" if parts[0] == "tests" else "::" + ".".join(parts[1:])
        state = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                state = "failed"
            elif child.tag == "skipped" and state == "passed":
                state = "skipped"
        result[f"{path}{cls}::{case.get('name')}"] = state
    return result


def run_suite(tree: Path, tests: list[str], kernel: str, junit: Path) -> dict[str, str]:
    env = {**os.environ, "CODEX_EXEC_SWITCH_KERNEL": kernel,
           "PYTHONPATH": os.pathsep.join(p for p in [str(PLUGIN_DIR),
                                                     os.environ.get("PYTHONPATH")] if p)}
    deselect = [a for t in DESELECTED for a in ("--deselect", t)]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "switch_kernel", "-p", "no:cacheprovider",
         "-c", str(tree / "pytest.ini"), "--rootdir", str(tree), f"--junitxml={junit}",
         *deselect, *tests],
        cwd=tree, env=env, capture_output=True, text=True, timeout=scaled(1500),
    )  # fmt: skip
    if not junit.exists():
        raise AssertionError(f"the {kernel} run did not report:\n{done.stdout[-4000:]}"
                             f"\n{done.stderr[-4000:]}")  # fmt: skip
    return outcomes(junit)


def check_against_python3(suite: Suite, tmp_path: Path) -> dict[str, str]:
    tree = extracted(suite)
    ours = run_suite(tree, list(suite.run), "codex-exec", tmp_path / "codex-exec.xml")
    assert ours, "no test ran"
    failed = sorted(t for t, s in ours.items() if s == "failed" and t not in DIFFERENCES)
    if failed:
        # Group by node id so parametrized tests rerun exactly.
        stock = run_suite(tree, failed, "python3", tmp_path / "python3.xml")
        only_ours = [t for t in failed if stock.get(t) == "passed"]
        assert not only_ours, f"pass for python3, fail for codex-exec: {only_ours}"
    return ours


pytestmark = pytest.mark.slow

IPYKERNEL = Suite("ipykernel", ("tests", "LICENSE"), tuple(IPYKERNEL_KERNEL_LEVEL))
KERNEL_TEST = Suite("jupyter_kernel_test", ("test_ipykernel.py", "LICENSE"),
                    ("test_ipykernel.py",))  # fmt: skip


@pytest.mark.timeout(1800)  # a whole child test run (~6 min on a quiet 2-core machine)
def test_ipykernel_kernel_level_tests(tmp_path: Path) -> None:
    ours = run_and_report(IPYKERNEL, tmp_path)
    assert sum(s == "passed" for s in ours.values()) >= 80, ours


@pytest.mark.timeout(900)
def test_jupyter_kernel_test(tmp_path: Path) -> None:
    pytest.importorskip("jupyter_kernel_test")
    ours = run_and_report(KERNEL_TEST, tmp_path)
    assert sum(s == "passed" for s in ours.values()) >= 10, ours


def run_and_report(suite: Suite, tmp_path: Path) -> dict[str, str]:
    ours = check_against_python3(suite, tmp_path)
    counts = {s: sum(v == s for v in ours.values()) for s in ("passed", "failed", "skipped")}
    print(f"\n{suite.dist} against codex-exec: {counts}")
    return ours


def test_outcomes_name_tests_like_pytest(tmp_path: Path) -> None:
    junit = tmp_path / "j.xml"
    junit.write_text(
        '<testsuites><testsuite><testcase classname="tests.test_kernel" name="test_a[x]"/>'
        '<testcase classname="test_ipykernel.IPyKernelTests" name="test_b">'
        '<failure message="m"/></testcase></testsuite></testsuites>'
    )
    assert outcomes(junit) == {"tests/test_kernel.py::test_a[x]": "passed",
                               "test_ipykernel.py::IPyKernelTests::test_b": "failed"}
