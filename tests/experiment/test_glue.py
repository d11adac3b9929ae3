"""GLUE readers: the real TSVs beside the repo (skipped when absent) and fixtures in the official formats."""

import pytest

from veralab.experiment.glue import GLUE_DEV_SIZES, GlueDataError, read_glue_split
from veralab.experiment.metrics import majority_class

OFFICIAL_SIZES = {("sst2", "train"): 67349, ("sst2", "dev"): 872, ("mrpc", "train"): 3668, ("mrpc", "dev"): 408,
                  ("rte", "train"): 2490, ("rte", "dev"): 277, ("stsb", "train"): 5749, ("stsb", "dev"): 1500}


@pytest.mark.parametrize("task,split", sorted(OFFICIAL_SIZES))
def test_real_glue_files_read_completely(glue_dir, task, split):
    texts, labels = read_glue_split(glue_dir, task, split)
    assert len(texts) == len(labels) == OFFICIAL_SIZES[(task, split)]
    assert all(isinstance(a, str) and a for a, _ in texts)
    if task == "stsb":
        assert min(labels) >= 0 and max(labels) <= 5 and isinstance(labels[0], float)
    else:
        assert set(labels) == {0, 1}
    if task in ("mrpc", "rte", "stsb"):
        assert all(b for _, b in texts)  # sentence pairs


def test_mrpc_bom_header_and_rte_quotes(glue_dir):
    texts, labels = read_glue_split(glue_dir, "mrpc", "train")
    assert texts[0][0].startswith("Amrozi accused his brother") and labels[0] == 1
    rte, _ = read_glue_split(glue_dir, "rte", "train")
    assert any(a.startswith('"') for a, _ in rte)  # read with quoting off: the quote is kept, no row swallowed


def test_cola_has_no_header_and_four_columns(tmp_path):
    (tmp_path / "CoLA").mkdir()
    (tmp_path / "CoLA" / "train.tsv").write_text(
        "gj04\t1\t\tOur friends won't buy this analysis, let alone the next one we propose.\n"
        "gj04\t0\t*\tOne more pseudo generalization and I'm giving up.\n"
        "gj04\t1\t\t\"Quoted\" sentence stays whole.\n")
    texts, labels = read_glue_split(tmp_path, "cola", "train")
    assert labels == [1, 0, 1] and texts[2] == ('"Quoted" sentence stays whole.', None)


def test_qnli_pairs_and_string_labels(tmp_path):
    (tmp_path / "QNLI").mkdir()
    (tmp_path / "QNLI" / "dev.tsv").write_text(
        "index\tquestion\tsentence\tlabel\n"
        "0\tWhat came into force after the new constitution was herald?\tAs of that day, the new constitution "
        "heralding the Second Republic came into force.\tentailment\n"
        "1\tWhat is the first major city in the stream of the Rhine?\tThe most important tributaries in this area "
        "are the Ill below of Strasbourg.\tnot_entailment\n")
    texts, labels = read_glue_split(tmp_path, "qnli", "dev")
    assert labels == [0, 1] and texts[0][0].startswith("What came") and texts[1][1].startswith("The most")


def test_missing_task_folder_names_what_is_there(tmp_path):
    (tmp_path / "SST-2").mkdir()
    with pytest.raises(GlueDataError, match=r"has no RTE/train.tsv for task 'rte' \(it holds: \['SST-2'\]\)"):
        read_glue_split(tmp_path, "rte", "train")


def test_unknown_labels_are_refused(tmp_path):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tcontradiction\n")
    with pytest.raises(GlueDataError, match=r"labels \['contradiction'\].*allowed: \('entailment', 'not_entailment'\)"):
        read_glue_split(tmp_path, "rte", "dev")


def _tsv(root, folder, text, split="train"):
    (root / folder).mkdir(exist_ok=True)
    path = root / folder / f"{split}.tsv"
    path.write_text(text)
    return path


def test_short_rows_are_refused_with_file_and_line_not_dropped(tmp_path):
    rows = "".join(f"{i}\tpremise {i}\thypothesis {i}\tentailment\n" if i % 2 else f"{i}\tpremise {i}\tentailment\n"
                   for i in range(100))
    path = _tsv(tmp_path, "RTE", "index\tsentence1\tsentence2\tlabel\n" + rows)
    with pytest.raises(GlueDataError, match=rf"^{path} line 2 has 3 tab-separated fields where the header has 4 "
                                            r"\(index, sentence1, sentence2, label\).*fix that line"):
        read_glue_split(tmp_path, "rte", "train")


def test_a_tab_inside_a_text_is_refused_but_a_trailing_tab_is_not(tmp_path):
    path = _tsv(tmp_path, "SST-2", "sentence\tlabel\na fine film\t1\t\nthe plot\tthickens, then thins\t0\n")
    with pytest.raises(GlueDataError, match=rf"^{path} line 3 has 3 tab-separated fields where the header has 2"):
        read_glue_split(tmp_path, "sst2", "train")
    _tsv(tmp_path, "SST-2", "sentence\tlabel\na fine film\t1\t\n\nthe end\t0\n")  # a blank line holds no example
    assert read_glue_split(tmp_path, "sst2", "train") == ([("a fine film", None), ("the end", None)], [1, 0])


def test_cola_short_row_names_its_headerless_layout(tmp_path):
    path = _tsv(tmp_path, "CoLA", "gj04\t1\t\tFine sentence.\ngj04\t0\tBroken sentence.\n")
    with pytest.raises(GlueDataError, match=rf"^{path} line 2 has 3 tab-separated fields where CoLA's headerless "
                                            r"layout has 4 \(source, label, original_label, sentence\)"):
        read_glue_split(tmp_path, "cola", "train")


@pytest.mark.parametrize("text,expected", [
    ("", r"is empty: expected a header line, then one tab-separated row per example"),
    ("sentence\tlabel\n", r"has a header but no rows"),
], ids=["empty", "header-only"])
def test_empty_files_are_refused(tmp_path, text, expected):
    path = _tsv(tmp_path, "SST-2", text, "dev")
    with pytest.raises(GlueDataError, match=rf"^{path} {expected}"):
        read_glue_split(tmp_path, "sst2", "dev")


def test_a_file_that_is_not_utf8_text_is_named_with_its_line(tmp_path):
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "dev.tsv").write_bytes(b"sentence\tlabel\nfine\t1\n\xff\xfe caf\xe9\t1\n")
    with pytest.raises(GlueDataError, match=r"dev.tsv line 3 is not UTF-8 text \(invalid start byte at byte 22\)"):
        read_glue_split(tmp_path, "sst2", "dev")


def test_a_damaged_overlong_line_is_named(tmp_path):
    path = _tsv(tmp_path, "SST-2", "sentence\tlabel\nfine\t1\n" + "x" * 300_000 + "\t1\nok\t0\n", "dev")
    with pytest.raises(GlueDataError, match=rf"^{path} line 3 cannot be read as tab-separated text \(field larger "):
        read_glue_split(tmp_path, "sst2", "dev")


def test_a_glue_dir_that_does_not_exist_says_so(tmp_path):
    with pytest.raises(GlueDataError, match=rf"^GLUE dir {tmp_path / 'nope'} does not exist; give the folder"):
        read_glue_split(tmp_path / "nope", "sst2", "dev")


def test_header_and_row_problems_are_told_apart(tmp_path):
    path = _tsv(tmp_path, "MRPC", "Quality\t#1 ID\t#2 ID\t#1 String\n1\t1\t2\tA sentence.\n")
    with pytest.raises(GlueDataError, match=rf"^{path}: the header \(line 1\) lacks column\(s\) \['#2 String'\] that "
                                            r"task 'mrpc' needs; it has \['Quality', '#1 ID', '#2 ID', '#1 String'\]"):
        read_glue_split(tmp_path, "mrpc", "train")
    path = _tsv(tmp_path, "MRPC", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA sentence.\tAnother.\n"
                                  "0\t3\t4\tOnly one sentence.\n")
    with pytest.raises(GlueDataError, match=rf"^{path} line 3 has 4 tab-separated fields where the header has 5"):
        read_glue_split(tmp_path, "mrpc", "train")


@pytest.mark.parametrize("score", ["abc", "", "5.5", "nan"])
def test_bad_stsb_score_names_file_line_and_value(tmp_path, score):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    row = "{}\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA man plays.\tA man is playing.\t{}\n"
    path = _tsv(tmp_path, "STS-B", header + row.format(0, "5.000") + row.format(1, score), "dev")
    with pytest.raises(GlueDataError, match=rf"^{path} line 3: STS-B score '{score}' is not a number in \[0, 5\]$"):
        read_glue_split(tmp_path, "stsb", "dev")


def test_unknown_label_names_file_and_first_line(tmp_path):
    path = _tsv(tmp_path, "SST-2", "sentence\tlabel\ngood\t1\nbad\tnegative\nworse\tnegative\n")
    with pytest.raises(GlueDataError, match=rf"^{path} has labels \['negative'\] that task 'sst2' does not know "
                                            r"\(first on line 3\); allowed: \('0', '1'\)"):
        read_glue_split(tmp_path, "sst2", "train")


def test_majority_class_of_real_mrpc_dev_is_the_paraphrase_label_at_68_percent(glue_dir):
    _, dev = read_glue_split(glue_dir, "mrpc", "dev")
    assert majority_class({"validation": dev}) == {"label": {"validation": 1},
                                                   "accuracy": {"validation": round(279 / 408, 6)}}


def test_majority_class_is_each_splits_most_frequent_label_and_its_share():
    assert majority_class({"a": [2, 0, 0, 0], "b": [1, 2, 2]}) == {"label": {"a": 0, "b": 2},
                                                                   "accuracy": {"a": 0.75, "b": round(2 / 3, 6)}}



def test_the_dev_sizes_reports_quote_are_the_official_ones_the_files_are_checked_against():
    official = {task: size for (task, split), size in OFFICIAL_SIZES.items() if split == "dev"}
    assert {task: GLUE_DEV_SIZES[task] for task in official} == official
