"""Where each rank's "r=..." label goes on a rank sweep: beside its own marker, never where it reads as a
neighbour's (the review found "r=16" on the r=64 point)."""

from __future__ import annotations

import matplotlib.path
import matplotlib.text
import matplotlib.transforms
import numpy as np
import pandas as pd

from .plotting import PALETTE

RANK_LABEL_GAP = 9  # points between the 7-point rank labels of a cluster
MARKER_CLEARANCE = 10  # points: how near a lone label's text may come to another point's marker or error bar
LONE_LABEL_CORNERS = (((-6, 8), "right"), ((6, 8), "left"), ((6, -8), "left"), ((-6, -8), "right"))


def label_ranks(ax, summary: pd.DataFrame) -> None:
    """"r=..." beside each rank's point, joined to its own marker by a thin line. A method's points within 30% of each
    other on the parameter axis form a cluster (VeRA's ranks up to 64 on MiniLM: 12 x (384 + r)); a cluster's labels
    stand in a column left of it, in the order of their points' scores, RANK_LABEL_GAP points apart. A lone point's
    label takes the first place (a corner, then above or below its bar) that keeps clear of the other points'
    markers and bars, of the methods' lines and of the labels already placed, so it never reads as a neighbour's.
    The offsets are in points: call it once the axes have their final size and limits."""
    rows = summary.sort_values(["method", "adapter_params"]).reset_index(drop=True)
    to_points = ax.transData.transform
    scale = ax.figure.dpi / 72  # display units per point
    points, lows, highs = (to_points(rows[["adapter_params", column]].to_numpy(float)) / scale
                           for column in ("center", "low", "high"))
    lows, highs = (np.where(np.isnan(ends), points, ends) for ends in (lows, highs))  # one seed's spread: no bar
    breaks = [i for i in range(1, len(rows)) if rows["method"][i] != rows["method"][i - 1]
              or rows["adapter_params"][i] / rows["adapter_params"][i - 1] >= 1.3]
    placed, lone = [], []
    for members in np.split(np.arange(len(rows)), breaks):
        if len(members) == 1:
            lone.append(members[0])
            continue
        order = sorted(members, key=lambda i: points[i, 1])
        heights = [points[i, 1] for i in order]
        for k in range(1, len(heights)):  # push apart upwards, then center the column on its points
            heights[k] = max(heights[k], heights[k - 1] + RANK_LABEL_GAP)
        shift = points[members, 1].mean() - np.mean(heights)
        left = points[members, 0].min()
        for i, height in zip(order, heights):
            offset = (left - 8 - points[i, 0], height + shift - points[i, 1])
            placed.append(_text_box(_rank_label(ax, rows.iloc[i], offset, "right")))
    shown = points * scale  # display units, as the text boxes
    bar_lows, bar_highs = lows[:, 1] * scale, highs[:, 1] * scale
    segments = [matplotlib.path.Path(shown[j:j + 2]) for j in range(len(rows) - 1)
                if rows["method"][j] == rows["method"][j + 1]]

    def clear(box, i) -> bool:
        near, edge = box.padded(MARKER_CLEARANCE * scale), box.padded(2 * scale)
        others = [j for j in range(len(rows)) if j != i]
        on_marker = any(near.contains(*shown[j]) for j in others)
        on_bar = any(near.x0 <= shown[j, 0] <= near.x1 and bar_lows[j] <= box.y1 and bar_highs[j] >= box.y0
                     for j in others)
        on_line = any(segment.intersects_bbox(edge, filled=False) for segment in segments)
        return not (on_marker or on_bar or on_line or any(box.overlaps(other) for other in placed))

    for i in lone:
        places = (*LONE_LABEL_CORNERS, ((0, highs[i, 1] - points[i, 1] + 8), "center"),
                  ((0, lows[i, 1] - points[i, 1] - 8), "center"))
        label = _rank_label(ax, rows.iloc[i], *places[0])
        for offset, align in (*places, places[0]):  # none clear: the first
            label.xyann = offset
            label.set_horizontalalignment(align)
            box = _text_box(label)
            if clear(box, i):
                break
        placed.append(box)


def _text_box(label) -> matplotlib.transforms.Bbox:
    """A label's text in display units, without its leader line."""
    renderer = label.figure.canvas.get_renderer()
    label.update_positions(renderer)  # an annotation places its text only when drawn
    return matplotlib.text.Text.get_window_extent(label, renderer)


def _rank_label(ax, row: pd.Series, offset: tuple[float, float], align: str):
    """One rank's label at an offset in points from its point, joined to it by a leader line."""
    return ax.annotate(f"r={int(row['rank'])}", (row["adapter_params"], row["center"]), fontsize=7,
                       textcoords="offset points", xytext=offset, ha=align, va="center",
                       color=PALETTE[row["method"]], gid="rank-label",
                       arrowprops={"arrowstyle": "-", "lw": 0.5, "color": PALETTE[row["method"]],
                                   "shrinkA": 0, "shrinkB": 3})
