"""The committed notebooks: outputs stripped, and the quickstart and figures notebooks run under papermill."""

import json
from pathlib import Path

import nbformat
import pytest

from veralab.studies.sweep import run_notebook

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
RESULTS = Path(__file__).resolve().parents[2] / "results" / "default"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_have_no_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)
    assert sum("parameters" in c["metadata"].get("tags", []) for c in code) == 1


def _run(name, tmp_path, **parameters):
    out = tmp_path / name
    run_notebook(NOTEBOOKS / name, out, parameters, cwd=NOTEBOOKS)
    cells = nbformat.read(out, as_version=4)["cells"]
    return "".join(o.get("text", "") for c in cells if c["cell_type"] == "code" for o in c["outputs"]), cells


@pytest.mark.slow
def test_quickstart_trains_merges_saves_and_reloads(tmp_path):
    text, _ = _run("00_quickstart.ipynb", tmp_path, rank=32, steps=3)
    assert "merged == unmerged: True" in text and "reloaded == trained: True" in text


@pytest.mark.slow
def test_figures_notebook_draws_from_the_records(tmp_path):
    if not list(RESULTS.glob("*/record.json")):
        pytest.skip("no committed records under results/default")
    _, cells = _run("05_figures.ipynb", tmp_path, runs=str(RESULTS))
    images = [o for c in cells if c["cell_type"] == "code" for o in c["outputs"] if "image/png" in o.get("data", {})]
    assert len(images) == 4
