"""notebooks/quickstart.ipynb runs top to bottom on the tiny setting (so it never rots)."""

from __future__ import annotations

import json
import os

import nbformat
from nbclient import NotebookClient

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NOTEBOOK = os.path.join(REPO, "notebooks", "quickstart.ipynb")


def test_quickstart_notebook_runs_on_the_tiny_setting(tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1 and "TINY = False" in parameters[0].source
    workdir, data_dir = tmp_path / "run", tmp_path / "data"
    parameters[
        0
    ].source = f"TINY = True\nWORKDIR = {str(workdir)!r}\nDATA_DIR = {str(data_dir)!r}\n"
    # The kernel inherits the environment: this checkout first, XLA optimisations off as in
    # conftest.py, quiet TensorFlow.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": REPO}}
    )
    client.execute()

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) >= 5  # objects, sequence, two projections, heatmap
    markdown = "".join(
        out["data"]["text/markdown"] for out in outputs if "text/markdown" in out.get("data", {})
    )
    assert "| seq-JEPA (M_tr=3, M_val=3) |" in markdown
    results = json.loads((workdir / "eval" / "results.json").read_text())
    assert results["step"] == 6 and results["m_val"] == [1, 2, 3]
