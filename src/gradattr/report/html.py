"""Small HTML building blocks for self-contained reports: escaping, tables, badges, the page shell and CSS.

Everything is inline (no external CSS, JavaScript or fonts), so a report opens offline from a single file.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

CSS = """
:root { --ink: #1d2430; --muted: #5b6575; --line: #e3e7ee; --bg: #f6f7fb; --card: #ffffff; --accent: #3b5bdb; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { background: linear-gradient(120deg, #23306b, #3b5bdb); color: #fff; padding: 28px 0 22px; }
.wrap { max-width: 1240px; margin: 0 auto; padding: 0 24px; }
header h1 { margin: 0 0 4px; font-size: 26px; font-weight: 650; }
header p { margin: 0; opacity: .85; }
nav { margin-top: 14px; display: flex; flex-wrap: wrap; gap: 6px; }
nav a { color: #fff; text-decoration: none; background: rgba(255,255,255,.14); padding: 3px 10px; border-radius: 12px;
  font-size: 13px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; margin: 18px 0 4px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
.card .big { font-size: 24px; font-weight: 650; }
.card .label { color: var(--muted); font-size: 13px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 12px; padding: 8px 22px 18px;
  margin: 18px 0; }
h2 { font-size: 21px; margin: 16px 0 6px; }
h3 { font-size: 17px; margin: 22px 0 6px; padding-top: 12px; border-top: 1px solid var(--line); }
h4 { font-size: 14px; margin: 14px 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
p.note, .muted { color: var(--muted); font-size: 13.5px; }
.figures > div { min-width: 0; }
.table-wrap { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13.5px; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
td { overflow-wrap: break-word; }
th { background: #f0f2f8; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafbfd; }
.figures { display: grid; grid-template-columns: minmax(0, 1.25fr) minmax(0, 1fr); gap: 16px; align-items: start; }
@media (max-width: 900px) { .figures { grid-template-columns: 1fr; } }
figure { margin: 0; }
img, svg { max-width: 100%; height: auto; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 8px; background: #fff; }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 4px; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 12px; font-weight: 600;
  white-space: nowrap; }
.holds { background: #d3f9d8; color: #1b6b2a; }
.fails { background: #ffe3e3; color: #a61e1e; }
.approximate { background: #fff3bf; color: #8a5a00; }
.na { background: #eceff3; color: #5b6575; }
.shade { display: block; margin: -5px -10px; padding: 5px 10px; }
.tok { padding: 1px 2px; border-radius: 3px; line-height: 1.9; }
.tokens td { font-size: 13px; }
.tokens td:first-child { white-space: nowrap; font-weight: 600; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
pre { background: #f0f2f8; padding: 10px 12px; border-radius: 8px; max-width: 100%; overflow-x: auto;
  white-space: pre-wrap; overflow-wrap: anywhere; }
ul.findings li, ul.differences li { margin: 4px 0; font-size: 14px; }
p.protocol { color: var(--muted); font-size: 13px; margin: 6px 0 0; overflow-wrap: anywhere; }
.unavailable { background: #fff8e6; border-left: 4px solid #f0a500; padding: 6px 10px; font-size: 13.5px; }
footer { color: var(--muted); font-size: 12.5px; padding: 10px 0 30px; }
"""


def esc(value: object) -> str:
    """HTML-escaped text of ``value``."""
    return html.escape(str(value))


def table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: Sequence[bool] | None = None, css: str = ""
) -> str:
    """An HTML table in a wrapper that scrolls it sideways when it is wider than the page. Header cells are
    escaped; body cells are inserted as given (escape them with :func:`esc`, or pass markup such as badges).
    ``numeric[j]`` right-aligns column j."""
    numeric = list(numeric or [False] * len(headers))
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if n else f"<td>{c}</td>" for c, n in zip(row, numeric, strict=True))
        + "</tr>"
        for row in rows
    )
    cls = f' class="{css}"' if css else ""
    return f'<div class="table-wrap"><table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


VERDICT_CLASSES = {
    "holds": "holds", "passes": "holds", "does not hold": "fails", "fails": "fails", "approximate": "approximate",
}  # fmt: skip


def badge(verdict: str) -> str:
    """A coloured verdict label: holds/passes (green), does not hold/fails (red), approximate (amber), else
    grey."""
    css = VERDICT_CLASSES.get(verdict, "na")
    text = verdict if len(verdict) <= 40 else verdict.split(":")[0]
    return f'<span class="badge {css}" title="{esc(verdict)}">{esc(text)}</span>'


def figure(src: str, caption: str, alt: str) -> str:
    """An embedded image (``src`` a data URI) with a caption."""
    return f'<figure><img src="{src}" alt="{esc(alt)}"><figcaption>{esc(caption)}</figcaption></figure>'


def document(title: str, header: str, body: str, footer: str) -> str:
    """The whole page: inline CSS, a header band, the body, a footer."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<header><div class="wrap">{header}</div></header><main class="wrap">{body}</main>'
        f'<footer class="wrap">{footer}</footer></body></html>\n'
    )
