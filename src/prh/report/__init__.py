"""Reports of alignment runs: figures (:mod:`prh.report.figures`) and the HTML/markdown report."""

from __future__ import annotations

from prh.report.build import build_report, summary_lines

__all__ = ["build_report", "summary_lines"]
