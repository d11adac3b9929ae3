"""One home for every default: the study notebooks' parameter cells name RunConfig fields and hold the default
profile's values, and a misspelt parameter is an error, never silently dropped."""

import ast
import json

import papermill
import pytest

from veralab.core.config import ConfigError
from veralab.experiment import RunConfig
from veralab.studies.grids import NOTEBOOKS, STUDIES, Point, expand, load_grid
from veralab.studies.notebook import config_from
from veralab.studies.profiles import PROFILES

NOT_COMPARED = {"output_dir"}  # the sweep gives each run its folder


def _cell(study: str) -> dict:
    return {name: ast.literal_eval(p["default"])
            for name, p in papermill.inspect_notebook(str(NOTEBOOKS / STUDIES[study])).items()}


@pytest.mark.parametrize("study", list(STUDIES))
def test_parameter_cell_names_only_run_config_fields(study):
    unknown = set(_cell(study)) - set(RunConfig.field_names())
    assert not unknown, f"{STUDIES[study]} parameters that are not RunConfig fields: {unknown}"
    RunConfig.from_dict({k: v for k, v in _cell(study).items()})  # and the cell's values are a valid config


def _home_profile(study: str) -> str:
    """The profile a study notebook's parameter cell comes from: default, or glue_cpu for the GLUE-only study."""
    return next(p for p in ("default", "glue_cpu") if study in PROFILES[p])


# Studies whose notebook runs, as shipped, a setting the committed study lacks (so Run All trains something new and
# draws it on the study): the fields in which its cell departs from a point of its profile
NEW_POINT = {"init_ablation": {"d_init"}, "vector_ablation": {"run_seed", "projection_prng_key"}}
COMMITTED = NOTEBOOKS.parent / "results" / "default"


@pytest.mark.parametrize("study", list(STUDIES))
def test_parameter_cell_is_a_point_of_its_profile(study, tmp_path):
    """Each cell is its profile's setting; 02 and 03 with the one change in NEW_POINT, which no committed run has."""
    cell = {k: v for k, v in _cell(study).items() if k not in NOT_COMPARED}
    points = [p.params for p in expand(study, load_grid(study, _home_profile(study)), str(tmp_path))]
    same = {k: v for k, v in cell.items() if k not in NEW_POINT.get(study, ())}
    matching = [p for p in points if all(p[k] == v for k, v in same.items())]
    closest = max(points, key=lambda p: sum(p[k] == v for k, v in same.items()))
    drift = {k: (v, closest[k]) for k, v in same.items() if closest[k] != v}
    assert matching, f"{STUDIES[study]} drifted from the {_home_profile(study)} profile (cell, profile value): {drift}"
    if study in NEW_POINT:
        mine = Point(study, {**matching[0], **cell, "output_dir": str(COMMITTED)}).run_dir
        assert mine not in [Point(study, {**p, "output_dir": str(COMMITTED)}).run_dir for p in points]
        assert not (mine / "record.json").exists(), f"{STUDIES[study]} as shipped reruns committed {mine.name}"


def test_config_from_refuses_a_misspelt_parameter():
    namespace = {"rnak": 16, "task": "rotten_tomatoes", "_private": 1, "In": [], "ast": ast, "print": print}
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) 'rnak' \(did you mean 'rank'\?\)"):
        config_from(namespace)
    config = config_from({"rank": 16, "task": "digits", "projection_prng_key": 3, "ast": ast})
    assert config.adapter.rank == 16 and config.adapter.projection_prng_key == 3 and config.task == "digits"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_every_parameter_shows_in_help_notebook_with_a_type_and_a_help_text(path):
    params = papermill.inspect_notebook(str(path))
    assert params and all(p["help"] for p in params.values()), {k: p["help"] for k, p in params.items()}
    assert all(p["inferred_type_name"] != "None" for p in params.values()), params  # papermill: "Unknown type"
    cell = next(c for c in json.loads(path.read_text())["cells"] if "parameters" in c["metadata"].get("tags", []))
    assigned = [line for line in "".join(cell["source"]).splitlines() if line and not line.startswith("#")]
    assert len(params) == len(assigned)  # no line papermill cannot read (it would drop that parameter)


def test_relative_paths_resolve_against_the_checkout_holding_the_working_directory_never_the_package(
        tmp_path, monkeypatch):
    checkout = tmp_path / "my-study"
    (checkout / "notebooks").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("")
    monkeypatch.delenv("VERALAB_PROJECT", raising=False)
    monkeypatch.chdir(checkout / "notebooks")  # JupyterLab runs a notebook in its folder
    assert config_from({"output_dir": "runs"}).output_dir == str(checkout / "runs")
    monkeypatch.chdir(tmp_path)  # outside any checkout: the working directory
    assert config_from({"output_dir": "runs"}).output_dir == str(tmp_path / "runs")
    monkeypatch.setenv("VERALAB_PROJECT", str(checkout))
    assert config_from({"output_dir": "runs"}).output_dir == str(checkout / "runs")
    assert config_from({"output_dir": str(tmp_path)}).output_dir == str(tmp_path)
