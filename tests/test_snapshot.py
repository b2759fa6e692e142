"""The committed results snapshot: ``report --snapshot DIR`` copies each suite's table page
and the sensitivity page with a header naming where they were written from."""
from reports.snapshot import write_snapshot


def test_the_snapshot_copies_each_table_with_its_provenance_header(tmp_path):
    report = tmp_path / "out"
    (report / "s1").mkdir(parents=True)
    (report / "s1" / "table.md").write_text("# Suite `s1`\n\n| method | peak |\n|---|---|\n| a | 1.00 |\n")
    (report / "sensitivity").mkdir()
    (report / "sensitivity" / "ct__m.png").write_bytes(b"png")
    (report / "sensitivity.md").write_text("# Sensitivity\n![m](sensitivity/ct__m.png)\n")
    written = write_snapshot(report, tmp_path / "docs", None)
    page = (tmp_path / "docs" / "s1.md").read_text()
    assert page.startswith("<!-- written by `python -m benchmark report --snapshot") and "| a | 1.00 |" in page
    assert (tmp_path / "docs" / "sensitivity" / "ct__m.png").read_bytes() == b"png"
    assert tmp_path / "docs" / "sensitivity.md" in written
    assert write_snapshot(report, tmp_path / "other", ["nope"]) == [tmp_path / "other" / "sensitivity.md",
                                                                   tmp_path / "other" / "sensitivity" / "ct__m.png"]


def test_the_snapshot_leaves_out_the_suites_it_is_told_to(tmp_path):
    report = tmp_path / "out"
    for suite in ("s1", "ci_small"):
        (report / suite).mkdir(parents=True)
        (report / suite / "table.md").write_text(f"# Suite `{suite}`\n")
    written = write_snapshot(report, tmp_path / "docs", None, leave_out={"ci_small"})
    assert written == [tmp_path / "docs" / "s1.md"]
