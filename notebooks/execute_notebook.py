"""Execute the quickstart notebook and store it with its outputs, so GitHub and the hub render its tables and plots.

    python notebooks/execute_notebook.py          # rewrite notebooks/quickstart.ipynb with fresh outputs

The stored form keeps what a reader wants and drops what changes from run to run: progress bars and logs
(stderr) are dropped, the temporary output folder is written as ``outputs/quickstart`` (the notebook's default),
and timings stay as measured. ``tests/test_notebook.py`` executes the notebook again and compares its outputs
with the stored ones (``comparable_outputs``: text exactly, numbers to 1e-4, timings masked), so stored outputs
cannot go stale: a change that moves a metric fails until this script is rerun and the result committed.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent / "quickstart.ipynb"
STORED_ROOT = "outputs/quickstart"  # how the output folder appears in the stored outputs
CELL_TIMEOUT_S = 180  # the whole notebook takes about 20 s on 2 cores; the limit only catches a hang
KERNEL = "bertrec-notebook"
_NUMBER = re.compile(r"-?\d[\d,]*\.?\d*(?:e[-+]?\d+)?")
_SECONDS = re.compile(r"\b\d+(?:\.\d+)? s\b")  # wall-clock timings, the one volatile figure in the outputs


def this_interpreter_kernel(folder: Path) -> KernelManager:
    """A kernel manager that starts ``sys.executable -m ipykernel_launcher``: no installed kernelspec is used
    (the ``python3`` spec runs whatever ``python`` is first on PATH, not necessarily this environment's)."""
    spec_dir = folder / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps({**spec, "display_name": "bertrec"}))
    specs = KernelSpecManager(kernel_dirs=[str(folder / "kernels")], ensure_native_kernel=False)
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


def execute(folder: Path, notebook_path: Path = NOTEBOOK) -> tuple[nbformat.NotebookNode, Path]:
    """Run the notebook in ``folder`` (its working directory) with ``BERTREC_NOTEBOOK_OUTPUT`` set under
    ``folder``; returns the executed notebook and that output root. Raises ``CellExecutionError`` if a cell fails."""
    output_root = folder / "notebook-output"  # not the default root, so a cell that ignores the setting shows
    notebook = nbformat.read(notebook_path, as_version=4)
    previous = os.environ.get("BERTREC_NOTEBOOK_OUTPUT")
    os.environ["BERTREC_NOTEBOOK_OUTPUT"] = str(output_root)  # the kernel inherits this process's environment
    try:
        client = NotebookClient(
            notebook,
            km=this_interpreter_kernel(folder),
            timeout=CELL_TIMEOUT_S,
            resources={"metadata": {"path": str(folder)}},
        )
        client.execute()
    finally:
        if previous is None:
            os.environ.pop("BERTREC_NOTEBOOK_OUTPUT", None)
        else:
            os.environ["BERTREC_NOTEBOOK_OUTPUT"] = previous
    return notebook, output_root


def stored_form(notebook: nbformat.NotebookNode, output_root: Path) -> nbformat.NotebookNode:
    """The notebook as committed: stderr dropped, the output root written as ``STORED_ROOT``."""
    root = str(output_root)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            if output.output_type == "stream":
                if output.name == "stderr":
                    continue
                output.text = output.text.replace(root, STORED_ROOT)
                if not output.text.strip():
                    continue
            for kind, value in output.get("data", {}).items():
                if isinstance(value, str) and not kind.startswith("image/"):
                    output.data[kind] = value.replace(root, STORED_ROOT)
            kept.append(output)
        cell.outputs = kept
    notebook.metadata.pop("widgets", None)
    return notebook


def comparable_outputs(notebook: nbformat.NotebookNode) -> list[tuple[str, list[float]]]:
    """Per code cell: its text outputs with numbers taken out (and timings masked), and the numbers."""
    cells = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        text = ""
        for output in cell.outputs:
            if output.output_type == "stream" and output.name == "stdout":
                text += output.text  # the kernel splits one print across messages as its flushes fall (load)
            elif output.output_type in ("execute_result", "display_data"):
                text += "\n" + output.data.get("text/plain", "") + "\n"
        text = _SECONDS.sub("<seconds>", text)
        text = "\n".join(line.rstrip() for line in text.splitlines() if line.strip())
        numbers = [float(n.replace(",", "")) for n in _NUMBER.findall(text)]
        cells.append((_NUMBER.sub("<n>", text), numbers))
    return cells


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        notebook, root = execute(Path(folder))
        nbformat.write(stored_form(notebook, root), NOTEBOOK)
    print(f"written {NOTEBOOK} with outputs")


if __name__ == "__main__":
    main()
