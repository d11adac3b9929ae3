"""GLUE readers: the real TSVs beside the repo (skipped when absent) and fixtures in the official formats."""

import pytest

from veralab.experiment.glue import GlueDataError, read_glue_split

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
