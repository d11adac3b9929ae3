"""The benchmarks' one output format: a header line and a table, printed and written as CSV and Markdown."""

from pathlib import Path

import pandas as pd


def write_table(frame: pd.DataFrame, header: str, stem: str) -> None:
    print(header)
    print(frame.to_string(index=False))
    out = Path(__file__).resolve().parent / stem
    frame.to_csv(out.with_suffix(".csv"), index=False)
    out.with_suffix(".md").write_text(header + "\n\n" + frame.to_markdown(index=False) + "\n")
