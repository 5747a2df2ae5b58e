"""The self-contained HTML page: inline CSS, figures as base64 PNG data URIs, no external files."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass

from reports.tables import Table, to_html

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0 auto; max-width: 1500px;
       padding: 1.5rem 2rem 4rem; color: #1d2330; background: #fff; line-height: 1.45; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.4rem; border-bottom: 2px solid #e3e7ee; padding-bottom: .3rem; }
.meta { color: #5a6275; margin-top: 0; }
.banner { background: #fff4e0; border-left: 4px solid #d98b00; padding: .5rem .8rem; margin: .4rem 0 .8rem;
          font-weight: 600; }
nav a { margin-right: 1rem; color: #2456a6; text-decoration: none; } nav a:hover { text-decoration: underline; }
.table-wrap { overflow-x: auto; margin: .8rem 0; }
table { border-collapse: collapse; font-size: .86rem; font-variant-numeric: tabular-nums; }
caption { caption-side: bottom; text-align: left; color: #5a6275; font-size: .8rem; padding-top: .5rem;
          max-width: 70rem; }
th, td { border: 1px solid #dde2ea; padding: .3rem .55rem; text-align: right; white-space: nowrap; }
th { background: #f3f5f9; font-weight: 600; } th.group { text-align: center; background: #e8edf5; }
th.stub { text-align: left; position: sticky; left: 0; background: #f3f5f9; z-index: 1; }
tbody tr:nth-child(even) td { background: #fafbfd; }
td.txt, th.txt { text-align: left; }
td.best { background: #e6f4ea !important; } td.skip { color: #8a93a6; text-align: center; }
td[title] { cursor: help; }
.p { display: block; color: #6b7386; font-size: .72rem; line-height: 1.1; }
ul.notes { font-size: .8rem; color: #5a6275; margin: .3rem 0 0; padding-left: 1.2rem; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; height: auto; border: 1px solid #eef0f4; }
figcaption { color: #5a6275; font-size: .85rem; margin-top: .3rem; max-width: 70rem; }
.empty { color: #8a93a6; font-style: italic; }
"""


@dataclass
class Figure:
    anchor: str
    title: str
    caption: str
    png: bytes


@dataclass
class Section:
    anchor: str
    title: str
    intro: str = ""
    table: Table | None = None
    figures: tuple[Figure, ...] = ()
    empty: str = ""  # shown when the section has no table rows and no figures


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _section(s: Section) -> str:
    e = html.escape
    parts = [f"<section id='{e(s.anchor)}'><h2>{e(s.title)}</h2>"]
    if s.intro:
        parts.append(f"<p>{e(s.intro)}</p>")
    has_table = s.table is not None and len(s.table.rows) > 0
    if has_table:
        parts.append(to_html(s.table))  # type: ignore[arg-type]
    for f in s.figures:
        parts.append(
            f"<figure id='{e(f.anchor)}'><img src='{data_uri(f.png)}' alt='{e(f.title)}'>"
            f"<figcaption>{e(f.caption)}</figcaption></figure>"
        )
    if not has_table and not s.figures and not s.intro:
        parts.append(f"<p class='empty'>{e(s.empty or 'Nothing to show.')}</p>")
    parts.append("</section>")
    return "".join(parts)


def page(title: str, meta: str, sections: list[Section], *, banner: str = "") -> str:
    """The page; ``banner``, when given, is the first thing under the title (a CPU budget's warning)."""
    e = html.escape
    top = f"<p class='banner'>{e(banner)}</p>" if banner else ""
    nav = "".join(f"<a href='#{e(s.anchor)}'>{e(s.title)}</a>" for s in sections)
    body = "".join(_section(s) for s in sections)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{e(title)}</h1>{top}<p class='meta'>{e(meta)}</p><nav>{nav}</nav>{body}</body></html>\n"
    )
