"""Text tables and a self-contained HTML report (inline SVG bar charts, no JavaScript)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from query.eval.metrics import METRIC_KEYS

COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1")


def results_table(results: Mapping[str, Mapping[str, float]], first: str = "mode") -> str:
    """A fixed-width table: one row per mode (or sweep value), one column per metric."""
    rows = [[first, *METRIC_KEYS]]
    for name, metrics in results.items():
        rows.append([name, *(f"{metrics.get(k, 0.0):.4f}" if k != "p50_ms" else f"{metrics.get(k, 0.0):.1f}"
                             for k in METRIC_KEYS)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def sweep_table(report: Mapping[str, Any]) -> str:
    """One row per (value, mode) of a sweep."""
    key = report["sweep"]["key"]
    flat = {f"{key}={value} {mode}": m for value, modes in report["sweep"]["results"].items()
            for mode, m in modes.items()}
    return results_table(flat, first="setting / mode")


def bar_chart(title: str, values: Mapping[str, float], *, width: int = 460, bar_h: int = 22) -> str:
    """A horizontal bar chart as inline SVG; bars scale to the largest value (or 1.0 for scores)."""
    top = max([*values.values(), 0.0])
    scale = 1.0 if top <= 1.0 else top
    label_w, pad = 190, 6
    height = 28 + len(values) * (bar_h + pad)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{html.escape(title)}">',
             f'<text x="0" y="16" font-weight="bold" font-size="14">{html.escape(title)}</text>']
    span = width - label_w - 60
    for i, (name, value) in enumerate(values.items()):
        y = 26 + i * (bar_h + pad)
        w = 0 if scale == 0 else max(1, int(span * value / scale))
        parts.append(f'<text x="0" y="{y + bar_h - 6}" font-size="12">{html.escape(name)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" '
                     f'fill="{COLORS[i % len(COLORS)]}"/>')
        shown = f"{value:.1f}" if scale > 1.0 else f"{value:.4f}"
        parts.append(f'<text x="{label_w + w + 4}" y="{y + bar_h - 6}" font-size="12">{shown}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _series(report: Mapping[str, Any]) -> dict[str, Mapping[str, float]]:
    if "sweep" in report:
        key = report["sweep"]["key"]
        return {f"{key}={v} {mode}": m for v, modes in report["sweep"]["results"].items()
                for mode, m in modes.items()}
    return dict(report["results"])


def render_html(report: Mapping[str, Any]) -> str:
    """The whole report page: a table and one bar chart per metric."""
    series = _series(report)
    charts = "\n".join(
        f"<figure>{bar_chart(key, {name: float(m.get(key, 0.0)) for name, m in series.items()})}</figure>"
        for key in METRIC_KEYS
    )
    extra = ""
    if report.get("answers"):
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>"
                       for k, v in report["answers"].items())
        extra = f"<h2>Answer quality</h2><table>{rows}</table>"
    title = f"esrag eval: {html.escape(str(report['dataset']))}"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "figure{display:inline-block;margin:1em}pre{background:#f4f4f4;padding:1em}</style></head><body>"
        f"<h1>{title}</h1><p>{int(report['queries'])} queries</p>"
        f"<pre>{html.escape(results_table(series, first='run'))}</pre>{charts}{extra}</body></html>\n"
    )


def write_report(path: Path, report: Mapping[str, Any]) -> Path:
    """Write the HTML report to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
    return path
