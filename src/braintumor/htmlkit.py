"""The small HTML kit of the reports (the audit, the run report, the drift verdict): one
stylesheet, escaping, tables, PNG images as data URIs and the page shell.

Pages built with it are one self-contained file: CSS and images inline, nothing fetched, so
a report opens offline and can be attached to a run or an email as is.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from typing import Any

PASS_COLOUR = "#0a6b2d"
FAIL_COLOUR = "#a4161a"

CSS = f"""
body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1200px;color:#1b1b1b;line-height:1.45;padding:0 1rem}}
h1{{margin-bottom:.2rem}}h2{{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}}
.meta{{color:#555}}table{{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.92rem}}
th,td{{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}}
th:first-child,td:first-child{{text-align:left}}th{{background:#f3f3f3}}
pre{{background:#f4f4f4;padding:.6rem;overflow-x:auto;font-size:.8rem}}
.pass{{color:{PASS_COLOUR};font-weight:700}}.fail{{color:{FAIL_COLOUR};font-weight:700}}
.note,.warn{{background:#fff8e1;border-left:4px solid #f0b400;padding:.5rem .8rem}}
.ok{{background:#e8f6ea;border-left:4px solid {PASS_COLOUR};padding:.5rem .8rem}}
tr.winner td{{background:#e8f1fb;font-weight:600}}
.plots img{{max-width:380px;margin:.3rem;border:1px solid #eee}}
.gallery{{display:flex;flex-wrap:wrap;gap:.6rem}}
.card{{border:1px solid #ddd;border-radius:6px;padding:.4rem;width:260px;font-size:.85rem}}
.card img{{width:125px;height:125px;object-fit:contain;background:#000}}
.card.wrong{{border-color:{FAIL_COLOUR}}}
.pairs{{display:flex;flex-wrap:wrap;gap:1rem}}.pair{{border:1px solid #ccc;padding:.4rem;
background:#fafafa;max-width:100%}}.pair img{{background:#000;margin-right:.3rem;
vertical-align:top}}.caption{{font-size:.8rem;color:#333;max-width:520px;word-break:break-all}}
"""


def escape(value: Any) -> str:
    """Any value as HTML text (quotes escaped too, so it is safe in attributes)."""
    return html.escape(str(value))


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image(src: str, alt: str, title: str | None = None) -> str:
    """An <img>; `src` is a data URI (see `data_uri`), never a URL to fetch."""
    titled = f' title="{escape(title)}"' if title is not None else ""
    return f'<img src="{src}" alt="{escape(alt)}"{titled}>'


def table(
    rows: Iterable[Iterable[Any]],
    header: Iterable[Any] | None = None,
    row_classes: Iterable[str] | None = None,
) -> str:
    """A table of escaped cells: an optional header row, then `rows`; `row_classes` gives
    each row a CSS class ("" for none)."""
    head = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>" if header else ""
    rows = list(rows)
    classes = list(row_classes) if row_classes is not None else [""] * len(rows)
    body = "".join(
        (f'<tr class="{escape(css)}">' if css else "<tr>")
        + "".join(f"<td>{escape(cell)}</td>" for cell in row)
        + "</tr>"
        for row, css in zip(rows, classes, strict=True)
    )
    return f"<table>{head}{body}</table>"


def page(title: str, body: str) -> str:
    """The whole document: `body` (HTML) under the kit's stylesheet."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{CSS}</style></head><body>
{body}
</body></html>
"""
