"""The benchmarks' one output format: a header line and a table, printed and written as CSV and Markdown."""

from pathlib import Path

import pandas as pd


def write_table(frame: pd.DataFrame, header: str, stem: str, out_dir=None) -> Path:
    """Print the table; write <out_dir>/<stem>.csv and .md (out_dir: benchmarks/ by default). Returns the .md path."""
    print(header)
    print(frame.to_string(index=False))
    folder = Path(out_dir) if out_dir else Path(__file__).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / stem
    frame.to_csv(out.with_suffix(".csv"), index=False)
    out.with_suffix(".md").write_text(header + "\n\n" + frame.to_markdown(index=False) + "\n")
    return out.with_suffix(".md")
