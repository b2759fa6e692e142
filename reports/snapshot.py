"""The committed results snapshot (``docs/results/``): each reported suite's table page, the
experiment pages (``experiments/<ID>.md``, those of the copied suites) and the sensitivity
page, copied from a report with a header saying when and from what they were written, so
the README can point at numbers that ``make report`` regenerates instead of numbers typed
by hand."""
from __future__ import annotations

import datetime
import os
import re
import shutil
from pathlib import Path


def write_snapshot(report: Path, snapshot: Path, suites: list[str] | None = None, leave_out=()) -> list[Path]:
    """``leave_out``: suites not copied (the CI regression and calibration suites: no evidence on any claim)."""
    snapshot.mkdir(parents=True, exist_ok=True)
    written = []
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    for table in sorted(report.glob("*/table.md")):
        suite = table.parent.name
        if (suites and suite not in suites) or suite in leave_out:
            continue
        target = snapshot / f"{suite}.md"
        target.write_text(f"<!-- written by `python -m benchmark report --snapshot {snapshot}` on {stamp} from "
                          f"{report}/{suite}/table.md; do not edit by hand: rerun the suite and the report -->\n"
                          + _relink(table, snapshot, {}))
        written.append(target)
    copied = {_normal(report / p.stem / "table.md"): p for p in written}  # links to a copied suite page: the copy
    for page in sorted(report.glob("experiments/*.md")):
        links = {_normal(page.parent / m) for m in re.findall(r"\]\(([^)]+/table\.md)\)", page.read_text())}
        if not links & set(copied):
            continue  # none of its suites is in the snapshot
        target = snapshot / "experiments" / page.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"<!-- written by `python -m benchmark report --snapshot {snapshot}` on {stamp} from "
                          f"{report}/experiments/{page.name}; do not edit by hand: rerun the suites and the report -->\n"
                          + _relink(page, target.parent, copied))
        written.append(target)
    claims = report / "claims.md"
    if claims.is_file():
        target = snapshot / "claims.md"
        target.write_text(f"<!-- written by `python -m benchmark report --snapshot {snapshot}` on {stamp}; do not edit "
                          "by hand -->\n" + claims.read_text())
        written.append(target)
    sensitivity = report / "sensitivity.md"
    if sensitivity.is_file():
        figures = snapshot / "sensitivity"
        if figures.exists():
            shutil.rmtree(figures)
        if (report / "sensitivity").is_dir():
            shutil.copytree(report / "sensitivity", figures)
        target = snapshot / "sensitivity.md"
        target.write_text(f"<!-- written by `python -m benchmark report --snapshot {snapshot}` on {stamp}; do not edit "
                          "by hand -->\n" + sensitivity.read_text())
        written += [target, *sorted(figures.glob("*.png"))]
    return written


def _relink(page: Path, target_dir: Path, copied: dict[Path, Path]) -> str:
    """``page``'s text with its relative links pointing from ``target_dir`` at the same files (or at
    their copies in the snapshot, ``copied``: report path -> snapshot path)."""
    def link(match) -> str:
        path = page.parent / match.group(1)
        return f"]({_relative(copied.get(_normal(path), path), target_dir)})"

    return re.sub(r"\]\((?!https?:|/)([^)]+)\)", link, page.read_text())


def _normal(path: Path) -> Path:
    return Path(os.path.normpath(path))


def _relative(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` (links in a copied page keep pointing at the report)."""
    return os.path.relpath(path.resolve(), start.resolve())
