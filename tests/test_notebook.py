"""The quickstart notebook runs top to bottom on CPU and shows what its text claims.

The kernel is this interpreter's ``ipykernel`` through a kernelspec written to ``tmp_path``: no installed
kernelspec is needed or used (the ``python3`` spec that ships with ipykernel runs whatever ``python`` is first on
PATH, which is not necessarily the virtual environment running the tests).
"""

import ast
import json
import re
import sys
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
KERNEL = "bertrec-test"
CELL_TIMEOUT_S = 180  # the whole notebook takes about 20 s on 2 cores; the limit only catches a hang
TOP10 = re.compile(r"^recommended 10 items: (\[.*\])$", re.MULTILINE)


def this_interpreter_kernel(tmp_path: Path) -> KernelManager:
    """A kernel manager that starts ``sys.executable -m ipykernel_launcher``, whatever is installed elsewhere."""
    spec_dir = tmp_path / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "bertrec tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")], ensure_native_kernel=False)
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


def text_outputs(cell) -> str:
    """Everything a code cell printed or displayed as text."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.data.get("text/plain", ""))
    return "\n".join(parts)


def test_stored_notebook_has_no_outputs():
    """Committed cleared: small, diff-friendly, and no stale numbers that the code no longer produces."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    output_root = tmp_path / "notebook-output"
    monkeypatch.setenv("BERTREC_NOTEBOOK_OUTPUT", str(output_root))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        km=this_interpreter_kernel(tmp_path),
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    client.execute()  # raises CellExecutionError, with the cell's traceback, if any cell fails

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "a code cell did not run"
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
    printed = "\n".join(text_outputs(cell) for cell in code)

    # every artifact went under the output root chosen by the environment variable, not the working directory
    figure = output_root / "quickstart.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000
    for model in ("pretrain", "finetune"):
        assert (output_root / model / "model.safetensors").is_file(), model
    assert not (tmp_path / "outputs").exists()  # the default root, relative to the kernel's working directory

    # the recommend cell printed ten distinct item ids
    match = TOP10.search(printed)
    assert match, "no 'recommended 10 items: [...]' line in the notebook's output"
    items = ast.literal_eval(match.group(1))
    assert len(set(items)) == 10 and all(re.fullmatch(r"i\d{5}", item) for item in items), items

    assert "refused: the base model" in printed  # the leakage guard demonstration
    assert "unknown items skipped: 1 | same top-10: True" in printed
    assert "empty history -> fallback: popularity" in printed
    assert "identical to Recommender.recommend" in printed  # plain transformers reproduced the top-10
    assert re.search(r"trainable parameters: [\d,]+ of [\d,]+ \(\d+\.\d\d%\)", printed)
