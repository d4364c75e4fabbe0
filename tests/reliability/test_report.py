"""Where the reliability figures go: the document only when the run asks, else a copy."""

from __future__ import annotations

from tests.reliability import report

DOCUMENT = "# Reliability\n\n<!-- soak:start -->\nnot measured\n<!-- soak:end -->\n"


def _paths(monkeypatch, tmp_path):
    doc, copy = tmp_path / "docs" / "reliability.md", tmp_path / "artifacts" / "reliability.md"
    doc.parent.mkdir()
    doc.write_text(DOCUMENT, encoding="utf-8")
    monkeypatch.setattr(report, "DOC", doc)
    monkeypatch.setattr(report, "DOC_COPY", copy)
    return doc, copy


def test_a_default_run_writes_its_figures_into_a_copy_and_leaves_the_document(
    monkeypatch, tmp_path
):
    monkeypatch.delenv(report.WRITE_DOC, raising=False)
    doc, copy = _paths(monkeypatch, tmp_path)

    report.write_block("soak", "p99 12 ms", path=doc)

    assert doc.read_text(encoding="utf-8") == DOCUMENT
    assert "<!-- soak:start -->\np99 12 ms\n<!-- soak:end -->" in copy.read_text(encoding="utf-8")
    report.write_block("soak", "p99 13 ms", path=doc)  # the copy keeps collecting blocks
    assert "p99 13 ms" in copy.read_text(encoding="utf-8")


def test_make_reliability_writes_the_document_itself(monkeypatch, tmp_path):
    monkeypatch.setenv(report.WRITE_DOC, "write")
    doc, copy = _paths(monkeypatch, tmp_path)

    report.write_block("soak", "p99 12 ms", path=doc)

    assert "<!-- soak:start -->\np99 12 ms\n<!-- soak:end -->" in doc.read_text(encoding="utf-8")
    assert not copy.exists()
