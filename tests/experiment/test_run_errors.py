"""Bad run input fails at once with one message naming what was wrong, never after training or with a traceback."""

import json
import subprocess
import sys
import textwrap
import time

import pytest

from veralab.core.config import ConfigError
from veralab.experiment import RunConfig, run_experiment
from veralab.experiment.models import ModelLoadError

QUICK_IMAGE = dict(task="digits", method="head", epochs=1, shots_per_class=2, max_eval_samples=32, batch_size=16,
                   save_adapter=False)


@pytest.mark.parametrize("flat,message", [
    ({"max_train_samples": 0}, r"max_train_samples must be a positive integer, or None for all of the data; got 0"),
    ({"max_eval_samples": 0}, r"max_eval_samples must be a positive integer"),
    ({"lr": -1e-3}, r"lr must be > 0, or None for the method's default; got -0.001"),
    ({"warmup_ratio": -5}, r"warmup_ratio .* in \[0, 1\]; got -5"),
    ({"task": "digits", "shots_per_class": 0}, r"shots_per_class must be a positive integer"),
    ({"head_lr": -1.0}, r"head_lr must be >= 0"),
])
def test_bad_values_are_refused_when_the_config_is_made(flat, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict(flat)


def test_cli_refuses_a_bad_value_in_one_line():
    done = subprocess.run([sys.executable, "-m", "veralab", "run", "--max-train-samples", "0"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("error: max_train_samples must be a positive integer, or None for all of the "
                                   "data; got 0")


@pytest.mark.slow
def test_a_reused_run_name_with_other_settings_is_refused(tmp_path):
    first = run_experiment(RunConfig.from_dict({**QUICK_IMAGE, "output_dir": str(tmp_path), "run_name": "foo"}))
    record = tmp_path / "foo" / "record.json"
    before = record.read_bytes()
    with pytest.raises(ConfigError, match=r"run folder .*foo holds a run with other settings \(epochs: 2 here, 1 "
                                          r"there\); choose another run_name"):
        run_experiment(RunConfig.from_dict({**QUICK_IMAGE, "epochs": 2, "output_dir": str(tmp_path),
                                            "run_name": "foo"}))
    assert record.read_bytes() == before
    again = run_experiment(RunConfig.from_dict({**QUICK_IMAGE, "output_dir": str(tmp_path), "run_name": "foo"}))
    assert again["started"] == first["started"]  # the same settings still reuse the stored record


def test_an_output_dir_that_is_a_file_fails_before_any_loading(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    # MRPC's files lack the columns MRPC needs: if data were loaded first, this would be a GlueDataError instead
    (tmp_path / "glue" / "MRPC").mkdir(parents=True)
    for split in ("train", "dev"):
        (tmp_path / "glue" / "MRPC" / f"{split}.tsv").write_text("x\ty\n1\t2\n")
    config = RunConfig.from_dict({"task": "mrpc", "glue_dir": str(tmp_path / "glue"), "output_dir": str(blocker)})
    with pytest.raises(ConfigError, match=r"cannot write the run folder .*not-a-folder/mrpc-vera-r256-s0-\w+: .*; give "
                                          r"an output_dir that is a writable folder"):
        run_experiment(config)


def test_checkpoint_errors_name_the_path(tmp_path):
    with pytest.raises(ConfigError, match=r"checkpoint .* holds local weights for a vision model"):
        RunConfig.from_dict({"task": "rotten_tomatoes", "checkpoint": str(tmp_path)})
    with pytest.raises(ConfigError, match=rf"checkpoint {tmp_path} is not a file; expected a .safetensors"):
        RunConfig.from_dict({"task": "digits", "checkpoint": str(tmp_path)})
    for name in ("random.safetensors", "random.pth"):
        junk = tmp_path / name
        junk.write_bytes(b"\x00not weights" * 50)
        config = RunConfig.from_dict({**QUICK_IMAGE, "checkpoint": str(junk), "output_dir": str(tmp_path / "runs")})
        with pytest.raises(ModelLoadError, match=rf"checkpoint {junk} could not be read as model weights \(.*\); "
                                                 r"expected a .safetensors file or a torch state dict"):
            run_experiment(config)


def test_a_full_disk_for_the_token_cache_warns_with_the_path_and_the_run_goes_on(tmp_path, minilm_path):
    # RLIMIT_FSIZE makes every write past 4 KiB fail as a full disk would (EFBIG), in a child process only
    code = textwrap.dedent(f"""
        import json, resource, signal, warnings
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        from transformers import AutoTokenizer
        from veralab.experiment.tasks import text_dataset, tokenize
        tokenizer = AutoTokenizer.from_pretrained({str(minilm_path)!r})
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ids = tokenize(text_dataset([("a long review " * 40, None)] * 20, [0] * 20), tokenizer, 64)[:]["input_ids"]
        print(json.dumps({{"n": len(ids), "warnings": [str(w.message) for w in caught]}}))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "VERALAB_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["n"] == 20
    (message,) = [w for w in result["warnings"] if "token cache" in w]
    assert str(tmp_path / "cache" / "tokens") in message and "set VERALAB_CACHE" in message
    assert not list((tmp_path / "cache" / "tokens").glob("*.arrow"))  # no half-written cache file is left


@pytest.mark.parametrize("content", ["[]", '{"status": "ok", "conf', "\xff\xfe"])
def test_a_damaged_record_counts_as_absent(tmp_path, content):
    from veralab.experiment.record import read_record

    (tmp_path / "record.json").write_bytes(content.encode("latin-1"))
    assert read_record(tmp_path) is None


def _tiny_mrpc(root, rows=24):
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    lines = [f"{i % 2}\t{i}\t{i + 100}\tThe company said sales rose {i} percent .\t"
             f"{'Sales rose' if i % 2 else 'Profits fell'} {i} percent , the company said .\n" for i in range(rows)]
    (root / "MRPC").mkdir(parents=True, exist_ok=True)
    (root / "MRPC" / "train.tsv").write_text(header + "".join(lines))
    (root / "MRPC" / "dev.tsv").write_text(header + "".join(lines[:16]))


@pytest.mark.slow
def test_edited_data_is_another_run_never_the_stored_record_nor_a_seed_of_it(tmp_path):
    """Edit a GLUE file after a run: a run under the same run_name is refused (the stored record read other data),
    and the run on the edited data is another setting in the tables, never pooled with the first as a seed."""
    from veralab.studies.collect import collect_records

    glue = tmp_path / "glue"
    _tiny_mrpc(glue)
    flat = {"task": "mrpc", "glue_dir": str(glue), "method": "head", "epochs": 1, "max_length": 32, "batch_size": 8,
            "save_adapter": False, "output_dir": str(tmp_path / "runs")}
    run_experiment(RunConfig.from_dict({**flat, "run_name": "mine"}))
    first = run_experiment(RunConfig.from_dict(flat))
    _tiny_mrpc(glue, rows=20)  # edited
    with pytest.raises(ConfigError, match=r"run folder .*mine holds a run with other settings \(glue_dir: "
                                          r"'sha256:\w+' here, 'sha256:\w+' there\)"):
        run_experiment(RunConfig.from_dict({**flat, "run_name": "mine"}))
    second = run_experiment(RunConfig.from_dict(flat))
    assert second["name"] != first["name"] and not second.get("reused")
    frame = collect_records(tmp_path / "runs")
    hashed = frame[frame["name"] != "mine"]
    assert len(hashed) == 2 and hashed["setting"].nunique() == 2


@pytest.mark.slow
def test_the_same_run_started_twice_at_once_is_refused_not_trained_twice(tmp_path):
    """Two `veralab run` with one run_name (or one config) at once: the second is refused in one line while the
    first trains; once the first is done the same command reuses its record."""
    long = {**QUICK_IMAGE, "method": "vera", "rank": 4, "shots_per_class": 20, "epochs": 400,
            "output_dir": str(tmp_path), "run_name": "shared"}
    args = [sys.executable, "-m", "veralab", "run", *[f"--{k.replace('_', '-')}={v}" for k, v in long.items()
                                                       if k != "save_adapter"], "--no-save-adapter"]
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = tmp_path / "shared" / ".run.lock"
        deadline = time.time() + 120
        while time.time() < deadline and not (lock.is_file() and lock.read_text()):
            time.sleep(0.2)
        with pytest.raises(ConfigError, match=rf"run folder .*shared is in use by another run \(.* pid {first.pid} "):
            run_experiment(RunConfig.from_dict({**long, "rank": 8}))  # other settings, same folder
        with pytest.raises(ConfigError, match="is in use by another run"):
            run_experiment(RunConfig.from_dict(long))
    finally:
        first.kill()
        first.wait()
    assert not (tmp_path / "shared" / "record.json").exists()
    done = run_experiment(RunConfig.from_dict({**long, "epochs": 1}))
    assert done["status"] == "ok"  # the lock died with its process: nothing stale blocks the folder
