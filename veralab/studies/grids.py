"""Grids: a profile's (or a YAML file's) tasks × seeds × points, expanded into the sweep's points, each a complete
and validated RunConfig; two points that are the same run are refused, never merged."""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..core.config import DEFAULT, METHODS, AdapterConfig, ConfigError
from ..experiment.config import RunConfig
from ..experiment.glue import GLUE_TASKS
from ..experiment.precision import check_precision
from ..experiment.record import read_record
from ..experiment.tasks import IMAGE_TASKS, TEXT_TASKS
from .profiles import PROFILES

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
STUDIES = {"rank_sweep": "01_rank_sweep.ipynb", "init_ablation": "02_init_ablation.ipynb",
           "vector_ablation": "03_vector_ablation.ipynb", "vit": "04_vit_image_classification.ipynb",
           "main_table": "06_main_table.ipynb"}


@dataclass
class Point:
    """One notebook execution. Its parameters are every RunConfig field (completed from RunConfig's defaults), so the
    notebook's own parameter-cell values never decide a run that the grid describes."""

    study: str
    params: dict

    def __post_init__(self) -> None:
        config = RunConfig.from_dict(self.params)
        # "auto" is resolved here, where the sweep starts: a worker that cannot see the GPU then fails loudly
        # instead of training on the CPU under a GPU run's name, and every point of a sweep has one precision
        device = config.resolved_device()
        check_precision(config.precision, device)
        self.params = {**config.to_dict(), "device": device, "precision": config.resolved_precision()}

    @property
    def run_dir(self) -> Path:
        return RunConfig.from_dict(self.params).run_dir()

    @property
    def notebook_out(self) -> Path:
        return self.run_dir / STUDIES[self.study]

    def done(self) -> bool:
        """An ok record, and no executed notebook cut short (a full disk while papermill saved it): such a point runs
        again, which reuses the record and rewrites the notebook. Committed records come without their notebooks."""
        record = read_record(self.run_dir)
        return bool(record and record.get("status") == "ok") and (not self.notebook_out.exists()
                                                                  or readable_notebook(self.notebook_out))


def readable_notebook(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text()).get("cells"), list)
    except (OSError, ValueError, AttributeError):
        return False


GRID_KEYS = ("tasks", "seeds", "base", "task_overrides", "points", "axes")
# set by the grid's lists, --output-dir and --glue-dir, never by a point; run_name would give every point one name
RESERVED = ("task", "run_seed", "projection_prng_key", "output_dir", "glue_dir", "run_name")


def load_grid(study: str, profile: str = "default", grid_file: str | None = None) -> dict | list[dict]:
    """The profile's grid for `study`, with a YAML file's keys (optionally under the study's name) over it. A study
    may be a list of grids (the paper's main table: one per model, each with its own per-task settings); the file's
    keys then go over each."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    if study not in PROFILES[profile]:
        raise ConfigError(f"profile {profile!r} has no study {study!r}; its studies: {', '.join(PROFILES[profile])}")
    grids = PROFILES[profile][study]
    override = _grid_file(study, grid_file) if grid_file else {}
    if isinstance(grids, list):
        return [_overridden(grid, override) for grid in grids]
    return _overridden(grids, override)


def _grid_file(study: str, grid_file: str) -> dict:
    try:
        text = yaml.safe_load(Path(grid_file).read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{grid_file}{where} is not valid YAML: {getattr(err, 'problem', None) or err}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read grid file {grid_file}: {err}") from err
    override = text.get(study, text) if isinstance(text, dict) else None
    if not isinstance(override, dict):
        raise ConfigError(f"{grid_file} must be a mapping (keys: {', '.join(GRID_KEYS)}), optionally under a "
                          f"study name ({', '.join(STUDIES)})")
    unknown = set(override) - set(GRID_KEYS) - set(STUDIES)
    if unknown:
        raise ConfigError(f"{grid_file}: unknown grid key(s) {sorted(unknown)}; allowed: {', '.join(GRID_KEYS)}")
    check_grid_shapes(override, f"{grid_file} (study {study})")
    return {k: v for k, v in override.items() if k not in STUDIES}


def _overridden(profile_grid: dict, override: dict) -> dict:
    grid = {**copy.deepcopy(profile_grid), **copy.deepcopy(override)}
    if "base" in override:
        grid["base"] = {**profile_grid.get("base", {}), **override["base"]}
    return grid


GRID_SHAPES = {"tasks": "a list of task names", "seeds": "a list of whole numbers",
               "base": "a mapping of settings (and of method to settings)",
               "task_overrides": "a mapping from task to a mapping of settings (and of method to settings)",
               "points": "a list of mappings of settings", "axes": "a mapping from setting to a list of values"}


def yaml_numbers(params: dict) -> dict:
    """Numbers as numbers: PyYAML reads 1e-3 (no dot) as the string '1e-3'; a float setting given such a string
    gets its float, anything else is left for the config's own check to refuse."""
    import typing

    hints = {**typing.get_type_hints(AdapterConfig), **typing.get_type_hints(RunConfig)}
    out = dict(params)
    for name, value in params.items():
        if isinstance(value, str) and float in (typing.get_args(hints.get(name)) or (hints.get(name),)):
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def check_grid_shapes(grid: dict, where: str) -> None:
    """Each grid key holds what expand() reads, or one message naming the file, the key and what it should be."""
    def fits(key, value):
        if key in ("tasks", "seeds"):
            kind = str if key == "tasks" else int
            return isinstance(value, list) and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)
        if key == "base":
            return isinstance(value, dict) and all(isinstance(s, dict) for m, s in value.items() if m in METHODS)
        if key == "task_overrides":
            return isinstance(value, dict) and all(isinstance(v, dict) and all(
                isinstance(s, dict) for m, s in v.items() if m in METHODS) for v in value.values())
        if key == "points":
            return isinstance(value, list) and all(isinstance(v, dict) for v in value)
        return isinstance(value, dict) and all(isinstance(v, list) for v in value.values())

    for key, value in grid.items():
        if key in GRID_SHAPES and not fits(key, value):
            raise ConfigError(f"{where}: {key} must be {GRID_SHAPES[key]}; got {value!r}")


def method_settings(settings: dict, method: str) -> dict:
    """A grid's `base` or `task_overrides` entry for a point of `method`: its plain settings, then those under the
    method's name (`{head_lr: 3e-3, vera: {lr: 1e-1}, lora: {lr: 1e-2}}`: a rate per method, which a point keeps
    unless it sets its own)."""
    return {**{k: v for k, v in settings.items() if k not in METHODS}, **settings.get(method, {})}


def expand(study: str, grid: dict | list[dict], output_dir: str, glue_dir: str | None = None, sets: dict | None = None
           ) -> list[Point]:
    """tasks × seeds × points (× axes), in a stable order; two that are the same run are refused, never merged.

    A point's settings are, later ones winning: `base`, the task's entry in `task_overrides` (per-task epochs and
    learning rates, as the paper's GLUE runs use), each with its entry under the point's method (method_settings),
    then the point, its `axes` combination, then `sets` (--set on the command line). `glue_dir` (a local GLUE folder)
    goes to every GLUE task's points.
    """
    if study not in STUDIES:
        raise ConfigError(f"unknown study {study!r}; allowed: {', '.join(STUDIES)}")
    if isinstance(grid, list):  # a study of several grids: their points, each run once
        points = [p for part in grid for p in expand(study, part, output_dir, glue_dir, sets)]
        twice = sorted({p.run_dir.name for p in points if sum(q.run_dir == p.run_dir for q in points) > 1})
        if twice:
            raise ConfigError(f"study {study!r}: its grids describe the same run twice ({', '.join(twice[:3])})")
        return points
    axes = grid.get("axes") or {}
    combos = [dict(zip(axes, values)) for values in itertools.product(*axes.values())] if axes else [{}]
    overrides = grid.get("task_overrides") or {}
    # an override for a known task the grid leaves out is unused (a grid file narrowing a profile's tasks keeps the
    # profile's overrides); an unknown name is a typo that would silently not apply
    stray = sorted(set(overrides) - set(grid["tasks"]) - set(TEXT_TASKS) - set(IMAGE_TASKS))
    if stray:
        raise ConfigError(f"task_overrides names task(s) {stray} that are neither in the grid's tasks {grid['tasks']} "
                          f"nor known tasks ({', '.join((*TEXT_TASKS, *IMAGE_TASKS))})")
    base = grid.get("base") or {}
    for where, settings, reserved in [("grid point", p, RESERVED) for p in grid.get("points") or []] + \
                                     [(f"task_overrides[{t!r}]", method_settings(o, m), RESERVED)
                                      for t, o in overrides.items() for m in METHODS] + \
                                     [("the grid's base", method_settings(base, m), ("run_name",)) for m in METHODS]:
        clash = sorted(set(reserved) & set(settings))
        if clash:
            raise ConfigError(f"{where} {settings} sets {clash}: give tasks and seeds in the grid's `tasks` and "
                              f"`seeds` lists, the output folder with --output-dir and a GLUE folder with --glue-dir; "
                              f"a sweep names each run by its settings (no run_name)")
    points, seen = [], {}
    for task, seed, point, combo in itertools.product(grid["tasks"], grid["seeds"], grid.get("points") or [{}],
                                                      combos):
        method = {**base, **point}.get("method", DEFAULT.method)
        params = {**method_settings(base, method), **method_settings(overrides.get(task, {}), method), **point,
                  **combo, **(sets or {}), "task": task,
                  "run_seed": seed, "projection_prng_key": seed, "output_dir": str(Path(output_dir).resolve())}
        if glue_dir and task in GLUE_TASKS:
            params["glue_dir"] = str(Path(glue_dir).expanduser().resolve())
        try:
            p = Point(study, yaml_numbers(params))  # validated here, before anything runs
        except ConfigError as err:
            raise ConfigError(f"study {study!r}, task {task}, seed {seed}, point {point}: {err}") from err
        where = f"task {task}, seed {seed}, point {point}" + (f", axes {combo}" if combo else "")
        if p.run_dir in seen:
            raise ConfigError(f"study {study!r}: {where} is the same run as {seen[p.run_dir]} ({p.run_dir.name}); "
                              f"a grid lists each task, seed, point and axis value once")
        seen[p.run_dir] = where
        points.append(p)
    return points

def sweep_points(study: str, profile="default", grid_file=None, output_dir="runs", limit=None,
                 glue_dir=None, sets: dict | None = None) -> list[Point]:
    """Every point of `study` (or "all": every study of the profile), each once, in a stable order; `sets` (the
    command line's --set) override every point's settings."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    studies = list(PROFILES[profile]) if study == "all" else [study]
    points = [p for s in studies for p in expand(s, load_grid(s, profile, grid_file), output_dir, glue_dir, sets)]
    return list({p.run_dir: p for p in points}.values())[:limit]


def parse_sets(pairs: list[str]) -> dict:
    """--set KEY=VALUE pairs as settings: VALUE read as YAML (1e-3 a number, true a bool, null None, [1, 2] a list),
    KEY a RunConfig or AdapterConfig field (a misspelt one is refused with the closest name) that a grid may set."""
    sets = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set epochs=1")
        try:
            sets[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {pair!r}: the value is not readable ({err})") from err
    reserved = sorted(set(RESERVED) & set(sets))
    if reserved:
        raise ConfigError(f"--set cannot set {reserved}: tasks and seeds come from the grid, the folder from "
                          f"--output-dir, a GLUE folder from --glue-dir")
    try:
        RunConfig.check_names(sets)
    except ConfigError as err:
        raise ConfigError(f"--set: {err}") from None
    return yaml_numbers(sets)
