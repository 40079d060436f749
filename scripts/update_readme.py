"""Copy the findings of the demo's report into README.md, between its ``<!-- DEMO-RESULTS -->`` markers.

Usage (after ``prh demo``, from the repository root)::

    python scripts/update_readme.py                       # prh-results/report.md -> README.md, figures -> docs/img
    python scripts/update_readme.py RESULTS --readme README.md --figures docs/img

The block is the report's "Findings" section as written (``prh.report.findings``, between its
``<!-- findings metric=... -->`` lines), under a heading, with the run's cross-modal heatmap after its first paragraph
and the shuffled-caption control figure before the control's paragraph; both PNGs are copied from the results
folder's ``figures/`` into the README's figure folder. Everything outside the markers stays byte for byte, the
README keeps its line endings, and the write is atomic. Standard library only: this is the project's own tooling, not
part of the prh package.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

START_MARKER = "<!-- DEMO-RESULTS -->"
END_MARKER = "<!-- /DEMO-RESULTS -->"
FINDINGS = re.compile(r"<!-- findings metric=(?P<metric>\S+) -->\n(?P<body>.*?)<!-- /findings -->", re.S)
HEADING = "### What `make demo` shows"


class UpdateError(Exception):
    """A README or a report this script cannot use; the message says how to fix it."""


def read_findings(results: Path) -> tuple[str, str]:
    """``(metric, markdown)`` of the findings section of ``results/report.md``."""
    report = results / "report.md"
    if not report.is_file():
        raise UpdateError(f"{report}: no such file; run `prh demo --out {results}` first.")
    match = FINDINGS.search(report.read_text(encoding="utf-8"))
    if match is None:
        raise UpdateError(
            f"{report} has no findings section (the run had no cross-modal pair, or an older prh wrote it); "
            f"run `prh report {results}` to rebuild it."
        )
    return match["metric"], match["body"]


def demo_block(results: Path, figures: str | None) -> str:
    """The README block (without the markers) made from the findings of ``results``; ``figures`` is the folder of
    the figure links, relative to the README (None: no figures)."""
    metric, body = read_findings(results)
    try:
        created = json.loads((results / "provenance.json").read_text(encoding="utf-8")).get("created")
    except (OSError, ValueError):
        created = None
    paragraphs = body.strip("\n").split("\n\n")
    out = [
        f"<!-- generated from {results.as_posix()}/report.md ({created or 'unknown date'}) by "
        "scripts/update_readme.py; run `prh demo`, then that script, instead of editing this block -->",
        HEADING,
        "",
    ]
    for i, paragraph in enumerate(paragraphs):
        if figures is not None and paragraph.startswith("The control:"):
            out += [f"![real vs shuffled captions]({figures}/control_{metric}.png)", ""]
        out += [paragraph, ""]
        if figures is not None and i == 0:
            out += [f"![cross-modal {metric}]({figures}/cross_modal_{metric}.png)", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def replace_block(text: str, block: str, where: str = "README") -> str:
    """``text`` with everything between :data:`START_MARKER` and :data:`END_MARKER` replaced by ``block``; the
    marker lines and everything outside them stay byte for byte, and ``text``'s line endings are kept."""
    fix = f"put a line `{START_MARKER}` before the demo section of {where} and a line `{END_MARKER}` after it"
    for marker in (START_MARKER, END_MARKER):
        count = text.count(marker)
        if count != 1:
            what = "has no" if count == 0 else f"has {count} copies of the"
            raise UpdateError(f"{where} {what} marker {marker!r}; {fix}.")
    start = text.index(START_MARKER) + len(START_MARKER)
    end = text.index(END_MARKER)
    if end < start:
        raise UpdateError(f"{where}: {END_MARKER!r} comes before {START_MARKER!r}; {fix}.")
    newline = "\r\n" if "\r\n" in text else "\n"
    body = block.replace("\r\n", "\n").strip("\n").replace("\n", newline)
    return text[:start] + newline + body + newline + text[end:]


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and one rename (no newline
    translation)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def update_readme(results: Path, readme: Path, figures: str | None = "docs/img") -> bool:
    """Rewrite the demo block of ``readme`` from ``results``' report and copy its two figures next to the README
    (into ``figures``, relative to it). Returns True when the README changed."""
    if not readme.is_file():
        raise UpdateError(f"{readme}: no such file; give the README that holds the {START_MARKER} block.")
    with open(readme, encoding="utf-8", newline="") as fh:
        text = fh.read()
    new = replace_block(text, demo_block(results, figures), where=str(readme))
    if figures is not None:
        metric, _ = read_findings(results)
        target = readme.parent / figures
        target.mkdir(parents=True, exist_ok=True)
        for name in (f"cross_modal_{metric}.png", f"control_{metric}.png"):
            source = results / "figures" / name
            if source.is_file():
                shutil.copyfile(source, target / name)
    if new == text:
        return False
    write_atomic(readme, new)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "results", nargs="?", default="prh-results", type=Path, help="the demo's results folder"
    )
    parser.add_argument("--readme", default="README.md", type=Path)
    parser.add_argument("--figures", default="docs/img", help="figure folder, relative to the README")
    parser.add_argument("--no-figures", action="store_true", help="no figure links, no copies")
    args = parser.parse_args(argv)
    try:
        changed = update_readme(args.results, args.readme, None if args.no_figures else args.figures)
    except UpdateError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.readme}: demo block {'rewritten' if changed else 'already up to date'} from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
