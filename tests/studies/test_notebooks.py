"""The committed notebooks: outputs stripped, and the quickstart and figures notebooks run under papermill."""

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from veralab.studies.kernels import run_notebook

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
    outputs = [o for c in cells if c["cell_type"] == "code" for o in c["outputs"]]
    warnings = [o.get("text", "") for o in outputs if o.get("name") == "stderr" or o["output_type"] == "error"]
    assert not warnings, warnings  # no warning box for the reader
    return "".join(o.get("text", "") for c in cells if c["cell_type"] == "code" for o in c["outputs"]), cells


@pytest.mark.slow
def test_quickstart_trains_merges_saves_and_reloads(tmp_path):
    text, cells = _run("00_quickstart.ipynb", tmp_path, rank=32, steps=3)
    assert "merged == unmerged: True" in text and "reloaded == trained: True" in text
    assert re.search(r"validation accuracy after 3 steps: 0\.\d{3} \(majority class 0\.\d{3}\)", text)
    assert any("image/png" in o.get("data", {}) for c in cells if c["cell_type"] == "code" for o in c["outputs"])


@pytest.mark.slow
def test_figures_notebook_falls_back_to_the_committed_records_and_says_so(tmp_path):
    if not list(RESULTS.glob("*/record.json")):
        pytest.skip("no committed records under results/default")
    empty = tmp_path / "my-runs"
    empty.mkdir()
    text, cells = _run("05_figures.ipynb", tmp_path, runs=str(empty))
    assert f"no records in {empty} yet: showing the committed results in {RESULTS}" in text
    images = [o for c in cells if c["cell_type"] == "code" for o in c["outputs"] if "image/png" in o.get("data", {})]
    assert len(images) == 4


def test_the_glue_notebook_offline_without_glue_dir_says_what_to_set_and_still_shows_the_study(tmp_path):
    import papermill  # the notebook as a user runs it (Run All), its figure cell included

    out = tmp_path / "06.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS / "06_main_table.ipynb"), str(out), cwd=str(NOTEBOOKS),
                               parameters={"output_dir": str(tmp_path / "runs")}, progress_bar=False)
    text = "".join(o.get("text", "") for c in nbformat.read(out, as_version=4)["cells"] if c["cell_type"] == "code"
                   for o in c["outputs"])
    assert "not run: GLUE task 'sst2' reads its data from glue_dir" in text and "set glue_dir (--glue-dir)" in text
    assert "results/glue/glue_cpu" in text  # the table cell ran, from the committed records
    assert not list((tmp_path / "runs").glob("*/record.json"))


def test_papermill_by_hand_prints_no_kernel_transport_warning(tmp_path):
    """`papermill` on the project's kernel: its output is papermill's own lines, not ipykernel's TCP warning
    (etc/ipython_kernel_config.py, installed by `make setup`)."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    notebook.metadata["kernelspec"] = {"name": "veralab", "display_name": "Python (veralab)", "language": "python"}
    nbformat.write(notebook, tmp_path / "in.ipynb")
    papermill = Path(sys.executable).with_name("papermill")
    done = subprocess.run([str(papermill), str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "without encryption" not in done.stdout + done.stderr
    assert "42" in json.dumps(nbformat.read(tmp_path / "out.ipynb", as_version=4)["cells"][0]["outputs"])
