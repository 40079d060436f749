"""Report sections: self-contained parts of a results folder that the report includes as it finds them.

A section is written by whatever produced it (e.g. an experiment of :mod:`prh.experiments`) through
:func:`write_section`, which renders one :class:`Section` — title, paragraphs, findings, figures, tables, file
links — into ``<results>/sections/<order>-<name>.html`` (an HTML fragment, every text escaped) and ``.md``.
:func:`read_sections` gives the fragments back in file-name order; :func:`prh.report.build_report` appends them to
report.html / report.md, and writes a page of the sections alone where the folder holds no alignment run. The report
never imports their producers: a section is a file, not code.

Paths inside a section (figure sources, file links) are relative to the results folder and must stay inside it.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from prh._validation import check_int
from prh.atomic import atomic_write_text
from prh.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

#: Folder of the section fragments inside a results folder.
SECTIONS_DIR = "sections"
#: First line of every fragment written by :func:`write_section` (how :func:`read_sections` recognises one).
MARKER = "<!-- prh-section -->"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.9em;color:#555;margin:.3em 0 1.5em}"
    "table.results{border-collapse:collapse;font-size:.85em}table.results td,table.results th{padding:2px 8px;"
    "border-bottom:1px solid #eee;text-align:right}.meta{color:#666;font-size:.9em}"
)


@dataclass(frozen=True)
class Figure:
    """One figure of a section: ``src`` is the image path relative to the results folder."""

    src: str
    caption: str
    title: str = ""


@dataclass(frozen=True)
class Table:
    """One table of a section (rendered with ``DataFrame.to_html``, which escapes every cell)."""

    title: str
    frame: pd.DataFrame


@dataclass
class Section:
    """Everything one section shows, as data (no HTML): the report renders it.

    Parameters
    ----------
    name : str
        Lower-case identifier (``[a-z0-9-]``), e.g. ``"colors"``; the fragment's file name.
    title : str
        Heading of the section.
    order : int
        Position among the sections (smaller first); default 50.
    paragraphs : list of str
        What the section measures, in plain text.
    findings : list of str
        The numbers, one sentence each.
    figures, tables : lists of :class:`Figure` / :class:`Table`
    files : list of (label, path) pairs
        Links to the section's data files, paths relative to the results folder.
    """

    name: str
    title: str
    order: int = 50
    paragraphs: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    files: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Fragment:
    """A section as read back: its file stem, HTML fragment and markdown (empty when no .md was written)."""

    stem: str
    html: str
    markdown: str


def _relative(path: str, what: str) -> str:
    """``path`` as a POSIX path relative to the results folder; absolute paths, URLs and ``..`` are refused."""
    text = str(path).replace(os.sep, "/")
    if not text or text.startswith("/") or ":" in text or any(p == ".." for p in text.split("/")):
        raise InputError(
            f"{what} {path!r} must be a path relative to the results folder, without '..' (e.g. "
            f"'experiments/colors/figures/mds.png')."
        )
    return text


def _check(section: Section) -> None:
    if not isinstance(section.name, str) or not _NAME.fullmatch(section.name):
        raise InputError(
            f"section name {section.name!r} must be lower-case letters, digits and '-', e.g. 'caption-density'."
        )
    check_int(section.order, "section order", minimum=0, maximum=99, hint="its place among the sections")


def render_html(section: Section) -> str:
    """The HTML fragment of ``section`` (every text escaped; paths checked by :func:`_relative`)."""
    _check(section)
    esc = html.escape
    parts = [MARKER, f"<section id='section-{section.name}'>", f"<h2>{esc(section.title)}</h2>"]
    parts += [f"<p>{esc(p)}</p>" for p in section.paragraphs]
    if section.findings:
        parts.append("<ul>" + "".join(f"<li>{esc(s)}</li>" for s in section.findings) + "</ul>")
    for fig in section.figures:
        src = esc(_relative(fig.src, "figure src"))
        title = f"<h3>{esc(fig.title)}</h3>" if fig.title else ""
        parts.append(
            f"{title}<figure><img src='{src}' alt='{esc(fig.title or section.title)}'>"
            f"<figcaption>{esc(fig.caption)}</figcaption></figure>"
        )
    for table in section.tables:
        body = table.frame.to_html(
            index=False, float_format=lambda v: f"{v:.4g}", border=0, classes="results", na_rep=""
        )
        parts.append(f"<h3>{esc(table.title)}</h3>{body}")
    if section.files:
        links = " · ".join(
            f"<a href='{esc(_relative(href, 'file link'))}'>{esc(label)}</a>" for label, href in section.files
        )
        parts.append(f"<p class='meta'>Files: {links}</p>")
    parts.append("</section>")
    return "\n".join(parts) + "\n"


def render_markdown(section: Section) -> str:
    """The markdown of ``section`` (for report.md)."""
    _check(section)
    md = [f"## {section.title}", ""]
    for p in section.paragraphs:
        md += [p, ""]
    if section.findings:
        md += [f"- {s}" for s in section.findings] + [""]
    for fig in section.figures:
        src = _relative(fig.src, "figure src")
        md += [f"![{fig.title or section.title}]({src})", "", fig.caption, ""]
    for table in section.tables:
        md += [f"### {table.title}", "", table.frame.to_markdown(index=False, floatfmt=".4g"), ""]
    if section.files:
        md += [
            "Files: "
            + " · ".join(f"[{label}]({_relative(href, 'file link')})" for label, href in section.files)
        ]
        md.append("")
    return "\n".join(md)


def write_section(results_dir: str | os.PathLike, section: Section) -> Path:
    """Render ``section`` into ``<results_dir>/sections/<order>-<name>.html`` and ``.md`` (atomic writes).

    A section of the same name written before (under any order) is replaced. Returns the HTML fragment's path.
    """
    _check(section)
    folder = Path(results_dir) / SECTIONS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{section.order:02d}-{section.name}"
    for old in folder.glob(f"[0-9][0-9]-{section.name}.*"):
        if old.stem != stem and old.suffix in (".html", ".md"):
            old.unlink(missing_ok=True)
    atomic_write_text(folder / f"{stem}.md", render_markdown(section))
    path = folder / f"{stem}.html"
    atomic_write_text(path, render_html(section))
    return path


def read_sections(results_dir: str | os.PathLike) -> list[Fragment]:
    """Every section fragment of ``results_dir`` (files of :func:`write_section`), in file-name order.

    Files in ``sections/`` that do not start with :data:`MARKER` are skipped.
    """
    folder = Path(results_dir) / SECTIONS_DIR
    out: list[Fragment] = []
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.html")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if not text.startswith(MARKER):
            continue
        md_path = path.with_suffix(".md")
        markdown = md_path.read_text(encoding="utf-8") if md_path.is_file() else ""
        out.append(Fragment(path.stem, text, markdown))
    return out


def write_sections_page(results_dir: str | os.PathLike) -> Path:
    """report.html and report.md of a results folder that holds sections but no alignment run.

    Raises
    ------
    InputError
        The folder holds no section either.
    """
    out = Path(results_dir)
    fragments = read_sections(out)
    if not fragments:
        raise InputError(
            f"{out} holds no results and no sections; run `prh align --out {out}`, `prh demo` or "
            f"`prh experiment NAME --out {out}` first."
        )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>prh report</title><style>{STYLE}</style>"
        "</head><body><h1>prh report</h1>\n" + "\n".join(f.html for f in fragments) + "</body></html>"
    )
    atomic_write_text(out / "report.html", page)
    md = ["# prh report", ""] + [f.markdown for f in fragments if f.markdown]
    atomic_write_text(out / "report.md", "\n".join(md))
    return out / "report.html"
