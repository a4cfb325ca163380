"""The page: one Jinja2 template with inline CSS, inline SVG figures and a small self-check script."""

from __future__ import annotations

import math
import re

import pandas as pd
from jinja2 import Environment, select_autoescape

# The policy lets nothing load from anywhere: a figure or style that tried to fetch would show as broken.
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #222;
       max-width: 1180px; margin: 0 auto; padding: 0 24px 48px; }
header { border-bottom: 2px solid #4c72b0; margin-bottom: 8px; }
h1 { font-size: 24px; margin: 18px 0 4px; }
h2 { font-size: 18px; margin: 30px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 3px; }
h3 { font-size: 14px; margin: 16px 0 6px; }
nav a { margin-right: 12px; color: #4c72b0; text-decoration: none; }
.meta { color: #666; font-size: 12px; margin: 4px 0 10px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 12.5px; }
th, td { padding: 3px 9px; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
th { background: #f4f6fa; font-weight: 600; }
td:first-child, th:first-child { text-align: left; }
tr.best td { font-weight: 600; }
td.best { font-weight: 700; color: #1d5e20; }
td.l, th.l { text-align: left; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 6px 10px; margin: 8px 0; }
.explain { color: #555; max-width: 900px; }
.row { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
figure { margin: 8px 0 14px; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: #666; font-size: 12px; max-width: 900px; }
.kv td:first-child { color: #555; }
</style>
</head>
<body>
<header>
<h1>{{ title }}</h1>
<div class="meta">{{ meta }}</div>
<nav>{% for s in sections %}<a href="#{{ s.id }}">{{ s.title }}</a>{% endfor %}</nav>
</header>
{% for s in sections %}
<section id="{{ s.id }}">
<h2>{{ s.title }}</h2>
{% if s.explain %}<p class="explain">{{ s.explain }}</p>{% endif %}
{% for note in s.notes %}<p class="note">{{ note }}</p>{% endfor %}
{% for block in s.blocks %}
{% if block.kind == "table" %}{% if block.title %}<h3>{{ block.title }}</h3>{% endif %}{{ block.html | safe }}
{% elif block.kind == "figure" %}<figure class="fig" id="{{ block.id }}">{{ block.svg | safe }}<figcaption>{{ block.caption }}</figcaption></figure>
{% elif block.kind == "text" %}<p>{{ block.text }}</p>
{% endif %}
{% endfor %}
</section>
{% endfor %}
<script>
// Self-check for headless rendering: every figure must have laid out with a size.
(function () {
  var figs = document.querySelectorAll("figure.fig"), bad = [];
  figs.forEach(function (f) {
    var el = f.querySelector("svg, img"), ok = false;
    if (el && el.tagName.toLowerCase() === "img") ok = el.complete && el.naturalWidth > 0;
    else if (el) { var r = el.getBoundingClientRect(); ok = r.width > 0 && r.height > 0; }
    f.querySelectorAll("image").forEach(function (im) { if (!im.getAttribute("href") && !im.getAttribute("xlink:href")) ok = false; });
    if (!ok) bad.push(f.id);
  });
  document.body.dataset.figures = String(figs.length);
  document.body.dataset.badFigures = bad.join(" ");
  document.body.dataset.height = String(Math.ceil(document.documentElement.scrollHeight));
  document.body.dataset.ok = bad.length === 0 ? "true" : "false";
})();
</script>
</body>
</html>
"""


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def _numeric(text: str) -> bool:
    return bool(re.fullmatch(r"[-+]?[\d.,/ %]+", text.strip()))


def table_html(df: pd.DataFrame, best_lowest: list[str] | None = None, percent: list[str] | None = None) -> str:
    """A plain HTML table; in each row, the lowest value among `best_lowest` columns is marked."""
    from html import escape

    percent = percent or []
    text_cols = {c for c in df.columns if df[c].map(lambda v: isinstance(v, str) and not _numeric(v)).any()}
    head = "".join(f'<th class="l">{escape(str(c))}</th>' if c in text_cols else f"<th>{escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.to_dict("records"):  # keeps each column's type (iterrows would make ints floats)
        best = None
        if best_lowest:
            vals = {c: row[c] for c in best_lowest if c in row and isinstance(row[c], float) and not math.isnan(row[c])}
            best = min(vals, key=vals.get) if vals else None
        cells = []
        for c in df.columns:
            v = row[c]
            text = f"{v:.1%}" if c in percent and isinstance(v, float) and not math.isnan(v) else _fmt(v)
            classes = " ".join(k for k, on in (("best", c == best), ("l", c in text_cols)) if on)
            cells.append(f'<td class="{classes}">{escape(text)}</td>' if classes else f"<td>{escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render(title: str, meta: str, sections: list[dict]) -> str:
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    return env.from_string(TEMPLATE).render(title=title, meta=meta, sections=sections, csp=CSP)
