"""The quickstart notebook runs top to bottom on CPU, shows what its text claims, and its stored outputs are the
ones a fresh run gives (numbers to 1e-4), so the outputs GitHub and the hub render cannot go stale.

The kernel is this interpreter's ``ipykernel`` through a kernelspec written to ``tmp_path``
(``notebooks/execute_notebook.py``, which also rewrites the stored notebook).
"""

import ast
import re
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "notebooks"))
from execute_notebook import NOTEBOOK, STORED_ROOT, comparable_outputs, execute, stored_form  # noqa: E402

TOP10 = re.compile(r"^recommended 10 items: (\[.*\])$", re.MULTILINE)


def text_outputs(cell) -> str:
    """Everything a code cell printed or displayed as text."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.data.get("text/plain", ""))
    return "\n".join(parts)


def test_stored_notebook_shows_its_outputs():
    """Committed executed: every code cell that prints or plots has its output stored (the figure as a PNG), no
    error and no progress-bar noise, and no machine's temporary path."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code)
    assert sum(bool(cell.outputs) for cell in code) >= len(code) - 2  # a cell of imports and definitions is quiet
    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error" or o.get("name") == "stderr"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert "/tmp/" not in NOTEBOOK.read_text() and STORED_ROOT in NOTEBOOK.read_text()


def test_quickstart_notebook_runs_and_its_stored_outputs_are_current(tmp_path):
    notebook, output_root = execute(tmp_path)  # raises CellExecutionError, with the traceback, if a cell fails

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

    # the stored outputs are this run's: text exactly, numbers to 1e-4, wall-clock timings masked
    fresh = comparable_outputs(stored_form(notebook, output_root))
    stored = comparable_outputs(nbformat.read(NOTEBOOK, as_version=4))
    assert len(fresh) == len(stored)
    stale = "stored outputs are stale: rerun `python notebooks/execute_notebook.py` and commit the notebook"
    for number, ((text, numbers), (stored_text, stored_numbers)) in enumerate(zip(fresh, stored)):
        assert text == stored_text, f"code cell {number}: {stale}"
        assert numbers == pytest.approx(stored_numbers, abs=1e-4), f"code cell {number}: {stale}"
