"""Figures and tables are pure functions of the records: regenerating them gives the same files."""

import filecmp
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

from veralab.studies.collect import collect_records, flatten
from veralab.studies.figures import ablation_rank, init_ablation_figure, main_figure, make_all, rank_sweep_figure
from veralab.studies.grids import sweep_points
from veralab.studies.notebook import load_records
from veralab.studies.plotting import PALETTE, provenance
from veralab.studies.profiles import PROFILES
from veralab.studies.tables import aggregate, cell, counts_per_task, main_table, results_table

ROOT = Path(__file__).resolve().parents[2]
RESULTS, FIGURES = ROOT / "results" / "default", ROOT / "figures"


@pytest.fixture(scope="module")
def records():
    if not list(RESULTS.glob("*/record.json")):
        pytest.skip("no committed records under results/default")
    return collect_records(RESULTS)


def test_regenerating_figures_reproduces_the_committed_ones(records, tmp_path):
    first = make_all(RESULTS, tmp_path / "a")
    make_all(RESULTS, tmp_path / "b")
    names = sorted(p.name for p in first)
    assert {"rank_sweep.png", "init_ablation.png", "vector_ablation.png", "vit.png", "vit_table.md",
            "results.csv"} <= set(names)
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", names, shallow=False)
    assert not mismatch and not errors
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", FIGURES, names, shallow=False)
    assert not errors, f"figures/ lacks {errors}: run `make figures`"
    assert not [m for m in mismatch if not m.endswith((".png", ".pdf"))], mismatch  # tables exactly


def test_every_run_of_the_default_profile_is_ok_and_labelled(records, tmp_path):
    expected = {p.run_dir.name for p in sweep_points("all", "default", output_dir=str(tmp_path))}
    assert set(records["name"]) == expected and set(records["status"]) == {"ok"}  # all 3 seeds of every point
    text = provenance(records[records["kind"] == "text"])
    assert "all-MiniLM-L6-v2" in text and "seeds [0, 1, 2]" in text and "median over seeds" in text
    assert "test split (512 examples)" in text
    images = provenance(records[records["kind"] == "image"])
    assert "tiny ViT" in images and "seeds [0, 1, 2]" in images
    assert all(len(PROFILES["default"][s]["seeds"]) >= 3 for s in PROFILES["default"])


def test_a_footer_names_each_tasks_count_where_the_tasks_differ():
    frame = pd.DataFrame({"task": ["mrpc", "mrpc", "sst2", "stsb"], "train_size": [3668, 3668, 1024, 1024],
                          "eval_size": [408, 408, 872, None]})
    assert counts_per_task(frame, "train_size") == "mrpc 3,668, sst2 1,024, stsb 1,024"
    assert counts_per_task(frame, "eval_size") == "mrpc 408, sst2 872"  # a task without the count is left out
    assert counts_per_task(frame[frame["task"] != "mrpc"], "train_size") == "1,024"  # shared: said once
    assert counts_per_task(frame.iloc[:0], "train_size") == ""


def test_vit_table_has_the_four_methods_with_adapter_counts(records):
    table = main_table(records, "image").set_index("method")
    assert list(table.index) == ["head", "full", "lora", "vera"]
    assert table["adapter_params"]["head"] == 0 and table["head_params"]["vera"] == 970
    assert table["adapter_params"]["vera"] == 4 * 2 * (96 + 64)  # 4 blocks x (q, v) x (out + r): adapter only
    assert table["adapter_params"]["vera"] < table["adapter_params"]["lora"]
    assert all(c.endswith("(n=3)") for c in table["digits"])


def test_committed_results_show_vera_beating_head_only(records):
    """The issue's bar for the embedded tasks: VeRA above the head-only baseline on held-out data (medians)."""
    medians = records.groupby(["task", "method", "rank"], dropna=False)["score"].median()
    for task in ("rotten_tomatoes", "mnist_5k", "digits"):
        vera = medians[task]["vera"].max()
        head = medians[task]["head"].iloc[0]
        assert vera > head + 0.03, (task, vera, head)


def test_runs_of_different_settings_are_never_aggregated(records):
    vera = records[(records["name"].str.startswith("rotten_tomatoes-vera-r256")) & records["default_variant"]]
    assert len(vera) == 3 and len(aggregate(vera, ["variant"])) == 1
    other = vera.iloc[:1].assign(epochs=10, setting=vera["setting"].iloc[0].replace('"epochs": 3', '"epochs": 10'))
    mixed = pd.concat([records, other], ignore_index=True)
    with pytest.raises(ValueError, match=r"come from 2 different settings \({'epochs': \['10', '3'\]}\)"):
        rank_sweep_figure(mixed)
    table = results_table(mixed)
    rows = table[(table["task"] == "rotten_tomatoes") & (table["variant"] == "VeRA r=256")]
    assert sorted(rows["n"]) == [1, 3] and sorted(rows["setting differs in"]) == ["epochs=10", "epochs=3"]
    assert rows[rows["n"] == 1]["score (%)"].iloc[0].endswith("(n=1)") and "±" not in "".join(rows["score (%)"])


def test_the_statistic_is_the_median_with_its_range_or_the_mean_with_its_sd():
    frame = pd.DataFrame({"variant": ["v"] * 3, "setting": ["s"] * 3, "score": [0.70, 0.80, 0.72],
                          "run_seed": [0, 1, 2], "adapter_params": [10] * 3, "head_params": [2] * 3})
    median = aggregate(frame, ["variant"]).iloc[0]
    assert cell(median) == "72.0 [70.0, 80.0] (n=3)"
    mean = aggregate(frame, ["variant"], stat="mean").iloc[0]
    assert cell(mean, "mean") == "74.0 ± 5.3 (n=3)"


def test_the_rank_sweep_draws_text_tasks_against_adapter_parameters(records):
    figure = rank_sweep_figure(records)
    axes = [ax for ax in figure.axes if ax.get_title()]
    assert len(axes) == 1 and "Rotten Tomatoes" in axes[0].get_title()  # no ViT panel
    assert axes[0].get_xlabel().startswith("adapter parameters")
    paper = pd.read_csv(ROOT / "veralab" / "studies" / "paper_results.csv", comment="#")
    adapters = paper[(paper["model"] == "roberta-base") & paper["method"].isin(["vera", "lora"])]
    assert set(adapters["adapter_params"]) == {43008, 294912}  # exact, not rounded
    large = paper[paper["model"] == "roberta-large"]
    assert set(large["adapter_params"]) == {61440, 786432} and len(large) == 12


def test_ablation_figures_follow_the_rank_the_ablations_ran_at(records, tmp_path):
    """The paper's ablations run at r=1024, the default profile's at 256: the figures must find either."""
    assert ablation_rank(records) == 256
    for path in RESULTS.glob("rotten_tomatoes-vera-r256-*/record.json"):
        record = json.loads(path.read_text())
        record["config"]["rank"] = 1024
        (tmp_path / "runs" / path.parent.name).mkdir(parents=True)
        (tmp_path / "runs" / path.parent.name / "record.json").write_text(json.dumps(record))
    assert ablation_rank(collect_records(tmp_path / "runs")) == 1024
    written = {p.name for p in make_all(tmp_path / "runs", tmp_path / "figures")}
    assert {"init_ablation.png", "vector_ablation.png"} <= written


def _glue_like(tmp_path, runs):
    """Records in the real format (from a committed one) for (task, method, rank, seed, score) tuples."""
    candidates = [json.loads(p.read_text()) for p in RESULTS.glob("rotten_tomatoes-vera-r256-s0-*/record.json")]
    template = next(r for r in candidates if flatten(r)["default_variant"])
    folder = tmp_path / "runs"
    for task, method, rank, seed, score in runs:
        record = json.loads(json.dumps(template))
        record["config"].update(task=task, method=method, rank=rank, run_seed=seed, projection_prng_key=seed)
        record["name"] = f"{task}-{method}-r{rank}-s{seed}"
        record.update(test=None, evaluated_on="validation", final={"accuracy": score},
                      best={"accuracy": score, "epoch": 3})
        record["params"]["adapter"] = {"vera": 12 * (384 + rank), "lora": 12 * rank * 768, "head": 0,
                                       "full": 22_713_216}[method]
        (folder / record["name"]).mkdir(parents=True)
        (folder / record["name"] / "record.json").write_text(json.dumps(record))
    return folder


def test_a_main_table_keeps_the_rank_sweeps_other_ranks_out(tmp_path):
    """GLUE runs share a folder: RTE has a rank sweep and a main-table comparison, SST-2 only the latter. The main
    table holds head / full / LoRA r=8 / VeRA r=1024 on both; the rank sweep draws RTE alone."""
    main = [(task, method, rank, seed, 0.6 + 0.01 * seed) for task in ("rte", "sst2")
            for method, rank in (("head", 256), ("full", 256), ("lora", 8), ("vera", 1024)) for seed in (0, 1)]
    sweep = [("rte", method, rank, seed, 0.55) for method, rank in (("vera", 1), ("vera", 16), ("lora", 1))
             for seed in (0, 1)]
    runs = _glue_like(tmp_path, main + sweep)
    written = {p.name for p in make_all(runs, tmp_path / "figures", prefix="glue_")}
    assert {"glue_results.md", "glue_main_table.md", "glue_main.png", "glue_rank_sweep.png"} <= written
    assert not any(name.startswith(("glue_vit", "glue_init", "vit")) for name in written), written
    table = main_table(collect_records(runs), "text")
    assert list(table["variant"]) == ["head only", "full fine-tune", "LoRA r=8", "VeRA r=1024"]
    assert {"rte", "sst2"} <= set(table.columns) and all(c.endswith("(n=2)") for c in table["rte"])
    panels = [ax.get_title() for ax in rank_sweep_figure(collect_records(runs)).axes if ax.get_title()]
    assert panels == ["GLUE RTE dev"]


def test_a_rank_sweep_on_the_main_tasks_stays_out_of_the_main_table(tmp_path):
    """glue_cpu runs its rank sweep on the main table's tasks, at 5 seeds against the main table's 9: the main table
    (and figure, and Table 2) keep LoRA r=8 and VeRA r=1024; where the ranks ran equally often, all are shown."""
    main = [(task, method, rank, seed, 0.7) for task in ("sst2", "stsb") for seed in range(4)
            for method, rank in (("head", 256), ("full", 256), ("lora", 8), ("vera", 1024))]
    sweep = [(task, method, rank, seed, 0.6) for task in ("sst2", "stsb") for seed in range(2)
             for method, rank in (("lora", 1), ("lora", 16), ("vera", 1), ("vera", 256))]
    records = collect_records(_glue_like(tmp_path, main + sweep))
    assert list(main_table(records, "text")["variant"]) == ["head only", "full fine-tune", "LoRA r=8", "VeRA r=1024"]
    [ax] = [ax for ax in main_figure(records, "text").axes if ax.get_title() == "GLUE SST-2 dev"]
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["head only", "full fine-tune", "LoRA r=8",
                                                                            "VeRA r=1024"]
    tied = collect_records(_glue_like(tmp_path / "tied", [r for r in main + sweep if r[3] < 2]))
    assert {"LoRA r=1", "LoRA r=8", "VeRA r=256", "VeRA r=1024"} <= set(main_table(tied, "text")["variant"])


def test_each_rank_label_names_its_own_marker_and_none_overlaps(tmp_path):
    """VeRA's ranks 1-64 lie within 16% of each other on MiniLM's parameter axis (12 x (384 + r)): their labels must
    still each point at their own marker (the review found "r=16" on the r=64 point) without covering each other."""
    scores = {("vera", 1): 0.75, ("vera", 4): 0.76, ("vera", 16): 0.755, ("vera", 64): 0.78, ("vera", 256): 0.79,
              ("vera", 1024): 0.787, ("lora", 1): 0.77, ("lora", 4): 0.8, ("lora", 16): 0.797}
    runs = _glue_like(tmp_path, [("sst2", m, r, s, v + 0.002 * s) for (m, r), v in scores.items() for s in (0, 1, 2)])
    figure = rank_sweep_figure(collect_records(runs))
    figure.canvas.draw()
    [ax] = [ax for ax in figure.axes if ax.get_title()]
    labels = [t for t in ax.texts if t.get_gid() == "rank-label"]
    assert len(labels) == len(scores)
    params = {"vera": lambda r: 12 * (384 + r), "lora": lambda r: 12 * r * 768}
    for label in labels:
        rank = int(label.get_text().removeprefix("r="))
        [(method, _)] = [(m, r) for (m, r) in scores if r == rank and params[m](r) == label.xy[0]]
        assert label.xy == pytest.approx((params[method](rank), 100 * scores[method, rank] + 0.2))  # the median seed
    boxes = [Text.get_window_extent(t) for t in labels]  # the text's own box, without its leader line
    overlapping = [(a.get_text(), b.get_text()) for i, (a, box) in enumerate(zip(labels, boxes))
                   for b, other in zip(labels[i + 1:], boxes[i + 1:]) if box.overlaps(other)]
    assert not overlapping
    key = {label: (label.get_text(), label.get_color()) for label in labels}
    markers = {key[label]: ax.transData.transform(label.xy) for label in labels}

    def gap(box, point):
        return np.hypot(max(box.x0 - point[0], 0, point[0] - box.x1), max(box.y0 - point[1], 0, point[1] - box.y1))

    lone = {("r=256", PALETTE["vera"]), ("r=1024", PALETTE["vera"])} | {(f"r={r}", PALETTE["lora"]) for r in (1, 4, 16)}
    for label, box in zip(labels, boxes):  # a lone point's label is nearer its own marker than any other's
        if key[label] in lone:
            assert min(markers, key=lambda other: gap(box, markers[other])) == key[label]


def test_a_learning_rate_search_is_shown_side_by_side_not_averaged():
    """The GLUE selection runs each method at several learning rates: a row per rate, labelled, none averaged."""
    folder = ROOT / "results" / "glue" / "glue_cpu_select"
    if not list(folder.glob("*/record.json")):
        pytest.skip("no committed selection records")
    table = main_table(collect_records(folder), "text").set_index("variant")
    assert {"VeRA r=1024 (lr=0.01)", "VeRA r=1024 (lr=0.03)", "VeRA r=1024 (lr=0.1)", "LoRA r=8 (lr=0.01)"} <= \
        set(table.index)
    assert all(c.endswith("(n=2)") for c in table["sst2"])


def test_panels_draw_the_majority_class_level_the_records_hold(tmp_path):
    runs = _glue_like(tmp_path, [("mrpc", m, r, s, 0.69) for m, r in (("head", 256), ("full", 256), ("lora", 8),
                                                                       ("vera", 1024), ("vera", 4)) for s in (0, 1)])
    for path in runs.glob("*/record.json"):
        record = json.loads(path.read_text())
        record["data"]["majority_class"] = {"label": {"validation": 1, "test": 0},
                                            "accuracy": {"validation": 0.683824, "test": 0.5}}
        path.write_text(json.dumps(record))
    for figure in (main_figure(collect_records(runs), "text"), rank_sweep_figure(collect_records(runs))):
        [ax] = [ax for ax in figure.axes if ax.get_title()]
        levels = [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"]
        assert levels == [pytest.approx(68.3824)]  # the scored split's (dev), not the test split's
        assert "majority class" in [t.get_text() for t in ax.texts]


def test_runs_that_differ_beyond_the_compared_field_are_not_drawn_as_a_pair(records):
    frame = records.copy()
    lora = frame["method"] == "lora"
    frame.loc[lora, "setting"] = [json.dumps({**json.loads(s), "epochs": 1, "max_train_samples": 64})
                                  for s in frame.loc[lora, "setting"]]
    with pytest.raises(ValueError, match=r"differ in epochs, max_train_samples besides what the panel compares "
                                         r"\(method, rank, lr, head_lr\): epochs: .*LoRA r=4 1"):
        main_figure(frame, "image")
    main_figure(records, "image")  # the committed study: one setting but the method's own


def _your_runs(tmp_path, changes: list[dict]) -> Path:
    """The user's runs in the real record format: the committed VeRA r=256 seed-0 run (as a user's re-run of that
    point reproduces it), each with its config `changes` applied."""
    candidates = [json.loads(p.read_text()) for p in RESULTS.glob("rotten_tomatoes-vera-r256-s0-*/record.json")]
    template = next(r for r in candidates if flatten(r)["default_variant"])
    folder = tmp_path / "runs"
    for i, change in enumerate(changes):
        record = json.loads(json.dumps(template))
        record["config"].update(change)
        record["name"] = f"yours-{i}"
        (folder / record["name"]).mkdir(parents=True)
        (folder / record["name"] / "record.json").write_text(json.dumps(record))
    return folder


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []


def test_your_runs_are_drawn_on_the_committed_study_never_pooled_with_it(records, tmp_path, capsys):
    runs = _your_runs(tmp_path, [{}, {"d_init": 0.01}, {"epochs": 1}])
    frame = load_records(runs, committed=RESULTS)
    assert "the study: 69 records" in capsys.readouterr().out and frame["yours"].sum() == 3
    d_panel, ab_panel = [ax for ax in init_ablation_figure(frame).axes if ax.get_title()]
    ticks = [t.get_text().split("\n")[0] for t in d_panel.get_xticklabels()]
    assert ticks == ["d_init=1e-07", "d_init=0.01", "d_init=0.1", "d_init=1"]  # the new setting: its own column
    texts = [t.get_text() for t in d_panel.texts]
    assert any(t.startswith("yours ") and t.endswith("n=1") for t in texts)
    assert sum(t.endswith("n=3") for t in texts) == 3  # the study's columns keep their 3 seeds: nothing pooled
    crosses = [c for c in d_panel.collections if c.get_offsets().shape[0] and
               tuple(c.get_facecolor()[0][:3]) == (0.0, 0.0, 0.0)]
    assert sum(c.get_offsets().shape[0] for c in crosses) == 2  # the re-run and the d_init=0.01 run
    assert "your runs (n=2)" in _legend(d_panel)
    assert "not drawn: 1 of your runs (setting differs in epochs)" in _legend(d_panel)
    [rank_panel] = [ax for ax in rank_sweep_figure(frame).axes if ax.get_title()]
    assert "your runs (n=1)" in _legend(rank_panel)
    table = main_table(frame[frame["kind"] == "image"], "image")
    assert not table["variant"].str.contains("yours").any()
    assert len(load_records(runs, committed=RESULTS, overlay=False)) == 3  # a whole sweep of one's own: alone


def test_your_runs_alone_on_a_task_the_study_lacks_are_the_panel(records, tmp_path):
    runs = _your_runs(tmp_path, [{"d_init": d, "run_seed": s} for d in (0.01, 0.1) for s in (0, 1)])
    frame = load_records(runs, committed=RESULTS)
    frame = pd.concat([frame[~frame["yours"]], frame[frame["yours"]].assign(task="digits_text")])
    panels = [ax for ax in init_ablation_figure(frame).axes if ax.get_title()]
    own = [ax for ax in panels if "digits_text" in ax.get_title()]
    assert own and "your runs" not in " ".join(_legend(own[0]))  # drawn as the panel's study, not as crosses


def test_figures_draw_on_the_callers_axes_at_a_given_size_with_the_caption_kept_apart(records):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    assert init_ablation_figure(records, ax=axes) is fig
    assert fig._suptitle is None and not fig.texts and axes[0].get_title()  # panels drawn; the figure is the caller's
    assert "all-MiniLM-L6-v2" in fig.veralab_caption and "seeds [0, 1, 2]" in fig.veralab_caption
    with pytest.raises(ValueError, match=r"draws 2 panel\(s\), 1 row\(s\) of 2; ax= gave 1 axes"):
        init_ablation_figure(records, ax=axes[0])
    small = main_figure(records, "image", figsize=(8, 3), caption=False)
    assert tuple(small.get_size_inches()) == (8, 3) and small.texts == [small._suptitle]  # no footer in the image
    assert "tiny ViT" in small.veralab_caption
    assert len(main_figure(records, "image").texts) == 2  # by default the caption is the footer, under the title
    plt.close("all")


def test_the_main_table_in_table_2_layout_as_markdown_and_latex_with_the_papers_rows(tmp_path):
    from veralab.studies.table2 import table2, to_latex, to_markdown

    main = [(task, method, rank, seed, 0.80 + 0.01 * seed) for task in ("stsb", "sst2", "rte")
            for method, rank in (("head", 256), ("full", 256), ("lora", 8), ("vera", 1024)) for seed in (0, 1, 2)]
    runs = _glue_like(tmp_path, main)
    for path in runs.glob("*/record.json"):  # as if run on the paper's model
        record = json.loads(path.read_text())
        record["config"]["model"] = record["model"] = "roberta-base"
        path.write_text(json.dumps(record))
    table = table2(collect_records(runs))
    assert list(table.columns) == ["model", "method", "source", "params (M)", "SST-2 (Acc.)", "RTE (Acc.)",
                                   "STS-B (Acc.)", "Avg."]  # the paper's task order, each with its metric
    ours = table[table["source"] == "ours"]
    assert list(ours["method"]) == ["head only", "full fine-tune", "LoRA r=8", "VeRA r=1024"]
    assert ours["SST-2 (Acc.)"].tolist() == [pytest.approx(81.0)] * 4 and ours["Avg."].iloc[0] == pytest.approx(81.0)
    paper = table[table["source"] == "paper"].set_index("method")
    assert paper.loc["VeRA", "RTE (Acc.)"] == pytest.approx(78.7) and paper.loc["LoRA", "SST-2 (Acc.)"] == \
        pytest.approx(95.1)
    assert paper.loc["VeRA", "params (M)"] == pytest.approx(0.043008)
    markdown = to_markdown(table)
    assert re.search(r"\| RoBERTa-base +\| VeRA r=1024 +\| ours +\| +0\.017 \| +81\.0 \|", markdown)
    assert "median" in markdown.splitlines()[0]
    latex = to_latex(table, caption="GLUE dev, 50% of runs")
    lines = latex.splitlines()
    assert lines.count("\\toprule") == 1 and lines.count("\\bottomrule") == 1 and "50\\% of runs" in latex
    rows = [line for line in lines if line.endswith("\\\\")]
    assert len(rows) == 1 + len(table) and all(line.count(" & ") == len(table.columns) - 2 for line in rows)
    assert "\\textit{VeRA (paper)} & 0.043 & 94.6 & 78.7 & 90.7 & 88.0" in latex
    written = {p.name for p in make_all(runs, tmp_path / "figures", prefix="glue_")}
    assert {"glue_table2.md", "glue_table2.tex"} <= written


def test_an_ablation_figure_is_written_only_where_its_variants_ran(records, tmp_path):
    """A campaign part way through (vector variants there, initialization variants not yet) gets the vector
    ablation's figure and no empty initialization figure."""
    runs = tmp_path / "runs"
    for path in RESULTS.glob("rotten_tomatoes-vera-r256-*/record.json"):
        row = flatten(json.loads(path.read_text()))
        if row["d_init"] == 0.1 and row["projection_init"] == "kaiming_uniform" or row["train_b"] is False:
            (runs / path.parent.name).mkdir(parents=True)
            (runs / path.parent.name / "record.json").write_text(path.read_text())
    written = {p.name for p in make_all(runs, tmp_path / "figures")}
    assert "vector_ablation.png" in written and "init_ablation.png" not in written
