"""The report's charts, drawn on the server as SVG by matplotlib.

A report is read in a mail client or printed to PDF, where no script runs, so its charts
cannot be the web app's client-side ones. Text stays text in the SVG (``svg.fonttype``
"none"): a reader can select the numbers and the tests can find them in the PDF.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: draw to files only

from matplotlib import pyplot as plt
from matplotlib.figure import Figure

INK, MUTED, ACCENT, WARN = "#1f2933", "#7b8794", "#2f6fbf", "#c2410c"
_STYLE: Any = {  # matplotlib's rc keys, typed as literals there
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.edgecolor": MUTED,
    "axes.labelcolor": INK,
    "xtick.color": INK,
    "ytick.color": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _svg(figure: Figure, name: str) -> str:
    """The figure as an inline ``<svg>``; its element ids carry ``name``, since matplotlib
    numbers them the same in every figure and one document holds several."""
    out = io.StringIO()
    figure.savefig(out, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = out.getvalue()
    text = text[text.index("<svg") :]  # the document embeds it: no XML prolog or doctype
    return re.sub(r'(\bid="|href="#|url\(#)', rf"\1{name}-", text)


def stage_flow(stages: Sequence[dict[str, Any]]) -> str:
    """Customers who entered each stage, in the model's order, with its drop-off."""
    with plt.rc_context(_STYLE):
        figure, axes = plt.subplots(figsize=(7, 0.45 * len(stages) + 0.8))
        names = [s["name"] for s in stages][::-1]
        entered = [s["entered"] for s in stages][::-1]
        bars = axes.barh(names, entered, color=ACCENT)
        for bar, stage in zip(bars, list(stages)[::-1], strict=True):
            rate = stage.get("drop_off_rate")
            label = f"{stage['entered']:,}" + (f"  (-{rate * 100:.1f} %)" if rate else "")
            axes.annotate(label, (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                          xytext=(4, 0), textcoords="offset points", va="center",
                          color=INK)  # fmt: skip
        axes.set_xlabel("customers who entered the stage (drop-off in brackets)")
        axes.margins(x=0.25)
        return _svg(figure, "flow")


def quadrant(drivers: Sequence[dict[str, Any]], lines: dict[str, float] | None) -> str:
    """Importance against performance: what to fix first sits high on importance, low on
    performance."""
    with plt.rc_context(_STYLE):
        figure, axes = plt.subplots(figsize=(7, 4.2))
        for n, d in enumerate(drivers, start=1):
            colour = WARN if d.get("quadrant") == "concentrate here" else ACCENT
            axes.scatter(d["performance"], d["importance"], color=colour, s=30, zorder=3)
            axes.annotate(str(n), (d["performance"], d["importance"]), xytext=(4, 3),
                          textcoords="offset points", color=INK)  # fmt: skip
        if lines:
            axes.axhline(lines["importance"], color=MUTED, linestyle="--", linewidth=0.8)
            axes.axvline(lines["performance"], color=MUTED, linestyle="--", linewidth=0.8)
        axes.set_xlabel("performance (0-100)")
        axes.set_ylabel("importance (% of explained variance)")
        return _svg(figure, "quadrant")


def score_against(ours: float, margin: float | None, benchmarks: Sequence[dict[str, Any]]) -> str:
    """Our NPS with its margin of error, beside each benchmark's."""
    with plt.rc_context(_STYLE):
        names = ["Our NPS", *(b["name"] for b in benchmarks)]
        values = [ours, *(float(b["value"]) for b in benchmarks)]
        figure, axes = plt.subplots(figsize=(7, 0.45 * len(names) + 0.8))
        colours = [ACCENT] + [MUTED] * len(benchmarks)
        axes.barh(names[::-1], values[::-1], color=colours[::-1],
                  xerr=[0.0] * len(benchmarks) + [margin or 0.0], capsize=3)  # fmt: skip
        reach = [0.0] * len(benchmarks) + [margin or 0.0]
        for y, (value, extra) in enumerate(zip(values[::-1], reach, strict=True)):
            axes.annotate(f"{value:.1f}", (value + extra if value >= 0 else value - extra, y),
                          xytext=(4 if value >= 0 else -4, 0), textcoords="offset points",
                          ha="left" if value >= 0 else "right", va="center",
                          color=INK)  # fmt: skip
        axes.axvline(0, color=MUTED, linewidth=0.8)
        spread = margin or 0.0
        axes.set_xlim(min(-10.0, *values) - spread - 10, max(*values, 10.0) + spread + 15)
        axes.set_xlabel("NPS (-100 to 100)")
        return _svg(figure, "nps")
