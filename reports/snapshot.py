"""The committed results snapshot (``docs/results/``): each reported suite's table page and
the sensitivity page, copied from a report with a header saying when and from what they
were written, so the README can point at numbers that ``make report`` regenerates instead
of numbers typed by hand."""
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
        body = table.read_text()
        body = re.sub(r"\]\((?!https?:|/)([^)]+)\)", lambda m: f"]({_relative(table.parent / m.group(1), snapshot)})", body)
        target = snapshot / f"{suite}.md"
        target.write_text(f"<!-- written by `python -m benchmark report --snapshot {snapshot}` on {stamp} from "
                          f"{report}/{suite}/table.md; do not edit by hand: rerun the suite and the report -->\n" + body)
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


def _relative(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` (links in a copied page keep pointing at the report)."""
    return os.path.relpath(path.resolve(), start.resolve())
