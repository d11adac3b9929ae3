"""collect_records names every record it cannot read, and figures refuse to overwrite tables with nothing."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from veralab.studies.collect import collect_records
from veralab.studies.figures import make_all

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results" / "default"


@pytest.fixture
def runs(tmp_path):
    """Two real records from results/default, copied."""
    sources = sorted(RESULTS.glob("*/record.json"))[:2]
    if len(sources) < 2:
        pytest.skip("no committed records under results/default")
    for source in sources:
        (tmp_path / "runs" / source.parent.name).mkdir(parents=True)
        shutil.copy(source, tmp_path / "runs" / source.parent.name / "record.json")
    return tmp_path / "runs"


@pytest.mark.parametrize("text,why", [
    (lambda good: good[: len(good) // 2], r"invalid JSON \(.*line"),
    (lambda good: "[]", r"not a JSON object but a list"),
    (lambda good: json.dumps({"name": "x", "status": "ok"}), r"missing \"config\""),
    (lambda good: json.dumps({k: v for k, v in json.loads(good).items() if k != "time"}), r"missing key 'time'"),
    (lambda good: json.dumps({**json.loads(good), "params": None}), r"'NoneType' object is not subscriptable"),
], ids=["truncated", "list", "no-config", "no-time", "wrong-type"])
def test_each_unreadable_record_is_warned_about_and_skipped(runs, text, why):
    bad = runs / "zz-bad" / "record.json"
    bad.parent.mkdir()
    bad.write_text(text(next(runs.glob("*/record.json")).read_text()))
    with pytest.warns(UserWarning, match=rf"^skipped {bad}: not a readable veralab run record: {why}") as caught:
        frame = collect_records(runs)
    assert len(caught) == 1
    assert len(frame) == 2 and frame.attrs["skipped"] == [str(bad)]


def test_readable_records_give_no_warning(runs, recwarn):
    assert len(collect_records(runs)) == 2 and not recwarn.list


def test_figures_without_records_write_nothing(runs, tmp_path):
    out = tmp_path / "figures"
    out.mkdir()
    (out / "results.md").write_text("the real table\n")
    (tmp_path / "empty").mkdir()
    for missing, why in ((tmp_path / "typo", ", which does not exist"), (tmp_path / "empty", "")):
        with pytest.raises(FileNotFoundError, match=rf"^no run records \(record.json\) under {missing}{why}; "
                                                    rf"nothing written to {out}$"):
            make_all(missing, out)
    for record in runs.glob("*/record.json"):
        record.write_text("[]")
    with pytest.warns(UserWarning), pytest.raises(FileNotFoundError, match=r"under .*runs, only 2 unreadable ones"):
        make_all(runs, out)
    assert [p.name for p in out.iterdir()] == ["results.md"] and (out / "results.md").read_text() == "the real table\n"


def test_figures_cli_with_a_mistyped_runs_folder_fails_in_one_line(tmp_path):
    out = tmp_path / "figures"
    out.mkdir()
    (out / "results.md").write_text("the real table\n")
    result = subprocess.run([sys.executable, "-m", "veralab", "figures", "--runs", str(tmp_path / "typo"), "--out",
                             str(out)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert f"error: no run records (record.json) under {tmp_path / 'typo'}, which does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert [p.name for p in out.iterdir()] == ["results.md"] and (out / "results.md").read_text() == "the real table\n"
    assert not (tmp_path / "typo").exists()


def test_moved_runs_carry_the_folder_they_lie_in_and_a_running_one_stays(runs, tmp_path):
    from veralab.core.io import exclusive
    from veralab.studies.collect import move_runs

    first, second = sorted(p for p in runs.iterdir())
    with exclusive(second / ".run.lock") as mine:  # a run still training in that folder
        assert mine
        moved = move_runs(runs, tmp_path / "kept")
    assert [p.name for p in moved] == [first.name] and second.is_dir() and not first.exists()
    record = json.loads((tmp_path / "kept" / first.name / "record.json").read_text())
    assert record["config"]["output_dir"] == str(tmp_path / "kept") and record["moved_from"]
    assert list(collect_records(tmp_path / "kept")["name"]) == [first.name]
    assert move_runs(runs, tmp_path / "kept") == [tmp_path / "kept" / second.name]  # once it has finished


def test_collect_and_the_tables_say_how_many_records_were_unreadable(runs, tmp_path):
    bad = runs / "zz-bad" / "record.json"
    bad.parent.mkdir()
    bad.write_text("{")
    done = subprocess.run([sys.executable, "-m", "veralab", "collect", "--runs", str(runs), "--out",
                           str(tmp_path / "t.csv")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "2 records, 1 skipped (unreadable" in done.stdout
    with pytest.warns(UserWarning):
        make_all(runs, tmp_path / "figures")
    assert f"1 unreadable record(s) left out ({bad})" in (tmp_path / "figures" / "results.md").read_text()


def test_a_record_the_tables_cannot_read_makes_its_sweep_point_fail(runs):
    from veralab.studies.kernels import unreadable_record

    good, bad = sorted(runs.iterdir())
    record = json.loads((bad / "record.json").read_text())
    (bad / "record.json").write_text(json.dumps({**record, "params": None}))
    assert unreadable_record(good) == ""
    assert "not subscriptable" in unreadable_record(bad)


def test_figures_go_beside_the_records_unless_told_never_over_the_committed_ones(runs):
    done = subprocess.run([sys.executable, "-m", "veralab", "figures", "--runs", str(runs)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert (runs / "figures" / "results.md").is_file()
    assert all(line.startswith(str(runs / "figures")) for line in done.stdout.splitlines())


def test_a_record_written_before_a_setting_existed_is_the_same_setting_as_one_written_after(runs):
    first, second = sorted(runs.iterdir())
    old = json.loads((second / "record.json").read_text())
    for name in ("text_column", "text_pair_column", "label_column", "data", "validation_holdout"):
        old["config"].pop(name, None)  # as records made before these settings were added
    (second / "record.json").write_text(json.dumps(old))
    frame = collect_records(runs)
    new = json.loads(frame[frame["name"] == first.name]["setting"].iloc[0])
    before = json.loads(frame[frame["name"] == second.name]["setting"].iloc[0])
    assert {k: before[k] for k in ("text_column", "label_column", "data")} == \
        {k: new[k] for k in ("text_column", "label_column", "data")}


def test_collect_prints_a_compact_table_and_leaves_fields_a_method_has_no_use_for_empty(tmp_path):
    if not list(RESULTS.glob("*/record.json")):
        pytest.skip("no committed records under results/default")
    frame = collect_records(RESULTS)
    head = frame[frame["method"] == "head"]
    lora = frame[frame["method"] == "lora"]
    assert head["rank"].isna().all() and head["d_init"].isna().all() and lora["d_init"].isna().all()
    assert lora["rank"].notna().all() and frame[frame["method"] == "vera"]["d_init"].notna().all()
    done = subprocess.run([sys.executable, "-m", "veralab", "collect", "--runs", str(RESULTS)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[0].split()
    assert header[:4] == ["name", "status", "task", "variant"] and "setting" not in header and "path" not in header
    assert "69 records; 14 of 49 columns shown (--all-columns for every one" in done.stdout
    assert max(len(line) for line in done.stdout.splitlines()) < 200
    wide = subprocess.run([sys.executable, "-m", "veralab", "collect", "--runs", str(RESULTS), "--all-columns"],
                          capture_output=True, text=True, timeout=120)
    assert "setting" in wide.stdout.splitlines()[0]
