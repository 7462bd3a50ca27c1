"""The run's report in three renderings of one list of sections: `README.md` (figures beside it),
`index.html` (one self-contained page, images embedded) and `slides.pdf` (one message per page).

A section is a title, the one-sentence message its slide carries, paragraphs whose numbers the caller
took from results files, tables (espnet_ext.scoring.results.Table) and figures, each naming the files
and the command it came from. Nothing here computes a result: it lays out what it is given.
"""
import base64
import html
import io
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Sequence, Tuple

from espnet_ext.analysis.plotting import pyplot
from espnet_ext.fileio import atomic_write_bytes, atomic_write_text
from espnet_ext.scoring.results import Table

SLIDE_SIZE = (11, 6.2)  # inches, 16:9-ish
SLIDE_TABLE_ROWS = 12


@dataclass
class Figure:
    png: Path  # its PDF twin, where written, sits beside it
    caption: str
    source: str  # the exp/ files and the command it came from


@dataclass
class Section:
    title: str
    message: str  # one sentence: what the slide says
    paragraphs: List[str] = field(default_factory=list)
    tables: List[Table] = field(default_factory=list)
    figures: List[Figure] = field(default_factory=list)
    on_slides: bool = True  # False: the page and the Markdown only (the deck's title page says it instead)


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)


def markdown(title: str, sections: Sequence[Section], report_dir: Path) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", "", f"**{section.message}**", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        for table in section.tables:
            lines += [f"**{table.title}**", ""] + table.markdown()[2:] + [f"_Source: {table.source}_", ""]
        for figure in section.figures:
            lines += [f"![{figure.caption}]({_relative(figure.png, report_dir)})", "",
                      f"_{figure.caption} Source: {figure.source}_", ""]
    return "\n".join(lines)


_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}td,th{border:1px solid #bbb;padding:2px 6px}
td.n{text-align:right}th{background:#eee}img{max-width:100%}.src{color:#666;font-size:12px}
.msg{font-weight:bold}figure{margin:1em 0}"""


def _html_table(table: Table) -> str:
    numeric = table.numeric or [False] * len(table.columns)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    cell_tags = ["<td class=n>" if n else "<td>" for n in numeric]
    body = "".join("<tr>" + "".join(f"{tag}{html.escape(cell)}</td>" for cell, tag in zip(row, cell_tags)) + "</tr>"
                   for row in table.rows)
    return (f"<h3>{html.escape(table.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p class=src>Source: {html.escape(table.source)}</p>")


def _html_figure(figure: Figure) -> str:
    data = base64.b64encode(figure.png.read_bytes()).decode("ascii")
    return (f"<figure><img alt=\"{html.escape(figure.caption)}\" src=\"data:image/png;base64,{data}\">"
            f"<figcaption>{html.escape(figure.caption)} <span class=src>Source: {html.escape(figure.source)}"
            "</span></figcaption></figure>")


def html_page(title: str, sections: Sequence[Section]) -> str:
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2><p class=msg>{html.escape(section.message)}</p>")
        parts += [f"<p>{html.escape(p)}</p>" for p in section.paragraphs]
        parts += [_html_table(t) for t in section.tables]
        parts += [_html_figure(f) for f in section.figures]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _slide(plt, title: str, message: str):
    fig = plt.figure(figsize=SLIDE_SIZE)
    fig.text(0.03, 0.95, title, fontsize=18, weight="bold", va="top")
    text = "\n\n".join(textwrap.fill(paragraph, 120) for paragraph in message.split("\n\n"))
    fig.text(0.03, 0.88, text, fontsize=12, va="top", color="#333")
    return fig


def _table_slide(plt, section: Section, table: Table):
    fig = _slide(plt, section.title, section.message)
    ax = fig.add_axes([0.03, 0.08, 0.94, 0.68])
    ax.axis("off")
    rows = table.rows[:SLIDE_TABLE_ROWS]
    drawn = ax.table(cellText=rows or [[""] * len(table.columns)], colLabels=["\n".join(textwrap.wrap(c, 14))
                     for c in table.columns], loc="upper center", cellLoc="center")
    drawn.auto_set_font_size(False)
    drawn.auto_set_column_width(list(range(len(table.columns))))
    drawn.scale(1, 1.5)
    _fit_width(fig, ax, drawn, 7 if len(table.columns) > 10 else 9)
    more = [f"first {SLIDE_TABLE_ROWS} of {len(table.rows)} rows"] if len(table.rows) > SLIDE_TABLE_ROWS else []
    more += [f"{len(section.tables) - 1} more table(s) in the HTML report"] if len(section.tables) > 1 else []
    fig.text(0.03, 0.02, f"{table.title}{' (' + '; '.join(more) + ')' if more else ''}. Source: {table.source}"[:230],
             fontsize=7, color="#666")
    return fig


def _fit_width(fig, ax, drawn, size: float, smallest: float = 4.0) -> None:
    """The largest font from `size` down (half-points, to `smallest`) at which the table, its columns sized
    to their text, fits the page's width: a routing table has 15 columns, which at 7 pt ran off both edges
    of the slide (the PDF is vector, so a small font still reads zoomed in; the HTML has the full table)."""
    renderer = fig.canvas.get_renderer()
    drawn.set_fontsize(size)
    while size > smallest and drawn.get_window_extent(renderer).width > ax.get_window_extent(renderer).width:
        size -= 0.5
        drawn.set_fontsize(size)


def _figures_slide(plt, section: Section):
    """Every figure of the section on one page, side by side (two rows from four figures)."""
    fig = _slide(plt, section.title, section.message)
    n = len(section.figures)
    columns = n if n <= 3 else 2
    rows = -(-n // columns)
    for i, figure in enumerate(section.figures):
        row, col = divmod(i, columns)
        ax = fig.add_axes([0.02 + col * 0.96 / columns, 0.07 + (rows - 1 - row) * 0.72 / rows, 0.96 / columns - 0.01,
                           0.72 / rows - 0.01])
        ax.imshow(plt.imread(str(figure.png)))
        ax.axis("off")
    sources = "; ".join(dict.fromkeys(f.source for f in section.figures))
    fig.text(0.03, 0.02, f"Source: {sources}"[:230], fontsize=7, color="#666")
    return fig


MAX_SLIDES = 20  # a deck a talk can show; past it, tables give way to figures from the last section back


def slide_plan(sections: Sequence[Section], max_pages: int = MAX_SLIDES) -> List[Tuple[Section, str]]:
    """The deck's pages after the title, as (section, "table" | "figures" | "text"): per section on the slides
    its first table on a page and its figures on another (a section with neither: its text), so each page
    carries the section's one message. Over `max_pages` in all, the table pages of sections that also have
    figures are dropped, the last section first (the analyses and studies before the baseline and routing
    results); their tables stay in the Markdown and HTML report."""
    plan = []
    for section in (s for s in sections if s.on_slides):
        kinds = (["table"] if section.tables else []) + (["figures"] if section.figures else [])
        plan += [(section, kind) for kind in kinds or ["text"]]
    for section in reversed([s for s in sections if s.on_slides and s.tables and s.figures]):
        if 1 + len(plan) <= max_pages:
            break
        plan.remove((section, "table"))
    return plan


def slides(title: str, subtitle: str, sections: Sequence[Section]) -> bytes:
    """The deck as PDF bytes: a title page, then the pages of `slide_plan`."""
    from matplotlib.backends.backend_pdf import PdfPages

    plt = pyplot()
    buffer = io.BytesIO()
    draw = {"table": lambda s: _table_slide(plt, s, s.tables[0]), "figures": lambda s: _figures_slide(plt, s),
            "text": lambda s: _slide(plt, s.title, s.message + "\n\n" + "\n\n".join(s.paragraphs))}
    pages = [lambda: _slide(plt, title, subtitle)] + [lambda s=s, k=k: draw[k](s) for s, k in slide_plan(sections)]
    with PdfPages(buffer) as pdf:
        for make in pages:  # one open figure at a time
            page = make()
            pdf.savefig(page)
            plt.close(page)
    return buffer.getvalue()


def slide_count(sections: Sequence[Section]) -> int:
    """Pages `slides` draws: the title, then `slide_plan`'s."""
    return 1 + len(slide_plan(sections))


def write_report(title: str, subtitle: str, sections: Sequence[Section], report_dir: Path) -> List[Path]:
    """README.md, index.html and slides.pdf in `report_dir` (each atomically); the paths written."""
    report_dir.mkdir(parents=True, exist_ok=True)
    outputs = [report_dir / "README.md", report_dir / "index.html", report_dir / "slides.pdf"]
    atomic_write_text(outputs[0], markdown(title, sections, report_dir))
    atomic_write_text(outputs[1], html_page(title, sections))
    atomic_write_bytes(outputs[2], slides(title, subtitle, sections))
    return outputs
