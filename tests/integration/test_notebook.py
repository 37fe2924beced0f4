"""examples/notebook.ipynb, executed cell by cell in a real IPython kernel through nbclient.

The kernel runs this venv's interpreter (a kernelspec written to a temporary directory), with
the repository root on PYTHONPATH so that `import asyncray` works without an installed package.
It is shut down (and its process reaped) before the test ends, whatever happened in the cells.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import psutil
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "notebook.ipynb"


def _kernel_dir(tmp_path: Path) -> Path:
    """A 'python3' kernelspec that runs this interpreter, in a directory of its own."""
    spec = tmp_path / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (asyncray test venv)",
        "language": "python",
        "metadata": {"debugger": False},
    }))
    return spec.parent


def _kernel_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    # Keep IPython's history and profile out of the user's home directory.
    env["IPYTHONDIR"] = str(tmp_path / "ipython")
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def _text(output: dict) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    if output.get("output_type") in ("execute_result", "display_data"):
        return output.get("data", {}).get("text/plain", "")
    if output.get("output_type") == "error":
        return "\n".join(output.get("traceback", []))
    return ""


def _tagged(nb, tag: str):
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r} in {NOTEBOOK.name}, found {len(cells)}"
    return cells[0]


def _result(cell) -> str:
    results = [o for o in cell.outputs if o.output_type == "execute_result"]
    assert results, f"cell {cell.source!r} displayed no result; outputs: {cell.outputs}"
    return results[-1].data["text/plain"]


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _new_children_left(before: set[int], timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for pid in _children() - before:
            try:
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    left.append(proc)
            except psutil.Error:
                pass
        if not left or time.monotonic() > deadline:
            return [" ".join(p.cmdline()) for p in left]
        time.sleep(0.05)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook after a run in a fresh kernel, which is shut down before any test looks at it."""
    tmp_path = tmp_path_factory.mktemp("kernel")
    before = _children()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    km = AsyncKernelManager(kernel_name="python3",
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(_kernel_dir(tmp_path))]))
    client = nbclient.NotebookClient(nb, km=km, timeout=60, startup_timeout=60, allow_errors=True,
                                     kernel_name="python3", record_timing=False)
    # cleanup_kc: shut the kernel down (and wait for its process) although we made the manager.
    client.execute(cleanup_kc=True, env=_kernel_env(tmp_path), cwd=str(ROOT))
    assert not km.has_kernel, "the kernel is still running after the notebook"
    # The kernel and the cluster it started must be gone (the module fixture runs outside the
    # per-test leak guard's window, so check here).
    left = _new_children_left(before)
    assert not left, f"processes left behind by the notebook run: {left}"
    return nb


@pytest.mark.timeout(120)
def test_notebook_cells_run_and_show_values(executed):
    nb = executed
    errors = [(c.source, _text(o)) for c in nb.cells if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    assert not errors, "cells raised:\n" + "\n\n".join(f"{src}\n---\n{tb}" for src, tb in errors)
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code"), "some cell did not run"
    assert _result(_tagged(nb, "sync-get")) == "'hello notebook'"
    assert _result(_tagged(nb, "await")) == "144"


@pytest.mark.timeout(120)
def test_worker_print_appears_in_a_cell_output(executed):
    nb = executed
    cells = [c for c in nb.cells if c.cell_type == "code"]
    first = cells.index(_tagged(nb, "sync-get"))
    # Forwarded asynchronously: it may land in the cell that ran the task or in a later one.
    streams = "".join(o.get("text", "") for c in cells[first:] for o in c.outputs if o.output_type == "stream")
    assert re.search(r"\(greet pid=\d+\) hello notebook, from a worker", streams), \
        f"the worker's print did not reach the notebook; stream output from the task's cell on:\n{streams}"
