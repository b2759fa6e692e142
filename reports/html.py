"""One self-contained page, ``reports/out/index.html``: links to the experiment pages
(reports/experiments.py), the claims with their verdicts and evidence, one section per suite
(its experiment ids, tables, figures, failed runs and per-run provenance), and the
sensitivity curves. Plain HTML + CSS rendered with Jinja2; the
figures are the report's own PNGs beside it."""
from __future__ import annotations

import datetime
from pathlib import Path

import jinja2
import pandas as pd

from core.results import RunState
from reports.claims import Verdict

TEMPLATE = jinja2.Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dipbench report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; line-height: 1.4; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } img { max-width: 100%; border: 1px solid #eee; margin: 0.3em 0; }
.holds { color: #176d17; font-weight: bold; } .fails { color: #b21e1e; font-weight: bold; }
.mixed { color: #a86400; font-weight: bold; } .not { color: #666; font-style: italic; }
.note { color: #555; font-size: 0.9em; } nav a { margin-right: 1em; }
</style></head><body>
<h1>dipbench report</h1>
<p class="note">Written {{ stamp }} from the run store {{ results }}; every number comes from stored runs.
Simulated measurements on real images are labelled as such in each suite's data line.</p>
<nav><a href="#experiments">Experiments</a><a href="#claims">Claims</a>
{% for s in suites %}<a href="#{{ s.name }}">{{ s.name }}</a>{% endfor %}
<a href="#sensitivity">Sensitivity</a></nav>
<h2 id="experiments">Experiments</h2>
<p class="note">One page per experiment id: its suites' tables and figures, the stopping-rule leaderboard of its runs,
and every number the papers state about it next to ours.</p>
<ul>{% for e in experiments %}<li><a href="{{ e.href }}">{{ e.name }}</a>: {{ e.suites }}</li>
{% else %}<li class="not">no evidence suite reported</li>{% endfor %}</ul>
<h2 id="claims">The surveys' claims</h2>
<table><tr><th>#</th><th>claim</th><th>threshold</th><th>verdict</th><th>ours</th><th>oracle setting</th>
<th>paper (B-T2)</th></tr>
{% for v in claims %}<tr><td>{{ v.number }}</td><td>{{ v.sentence }} <span class="note">({{ v.source }})</span></td>
<td>{{ v.threshold }}</td><td class="{{ v.verdict.split()[0] }}">{{ v.verdict }}</td>
<td>{% for s, q, h in v.evidence %}<a href="#{{ s }}">{{ s }}</a>: {{ q }} → <span class="{{ h }}">{{ h }}</span><br>{% else %}
<span class="not">run {{ v.missing }}</span>{% endfor %}</td>
<td>{% for s, q, h in v.oracle %}<a href="#{{ s }}">{{ s }}</a>: {{ q }} → <span class="{{ h }}">{{ h }}</span><br>
{% else %}—{% endfor %}</td>
<td>{{ v.paper or "—" }}</td></tr>
{% endfor %}</table>
{% for s in suites %}
<h2 id="{{ s.name }}">Suite {{ s.name }}{% if s.experiments %} ({{ s.experiments }}){% endif %}</h2>
<p class="note">{{ s.description }}</p><p><b>Data:</b> {{ s.provenance }}</p>
{{ s.table }}
{% for title, html in s.tables %}<h3>{{ title }}</h3>{{ html }}{% endfor %}
{% for fig in s.figures %}<img src="{{ fig }}" alt="{{ fig }}">{% endfor %}
{% if s.failed %}<h3>Failed and damaged runs</h3>{{ s.failed }}{% endif %}
<details><summary>Per-run provenance ({{ s.runs }} runs)</summary>{{ s.provenance_table }}</details>
{% endfor %}
<h2 id="sensitivity">Sensitivity to the tuned settings</h2>
<p class="note">Calibration trials of <code>benchmark tune</code> (never on evaluated measurements); chosen value dotted.</p>
{% for fig in sensitivity %}<img src="{{ fig }}" alt="{{ fig }}">{% else %}<p class="not">no calibration tables</p>{% endfor %}
</body></html>
""")

PROVENANCE = {"run_id": "run", "method.name": "method", "status": "status", "code.git_commit": "commit",
              "code.git_dirty": "uncommitted", "versions.torch": "torch", "placement.host": "host",
              "placement.executor": "executor", "wall_time_s": "wall time [s]"}


def write_html(out: Path, results: Path, suites: list[dict], claims: list[Verdict],
               experiment_pages: list[Path] = ()) -> Path:
    """``suites``: per suite ``name``, ``runs`` (its frame), ``summary`` (Table 2 layout) and the
    figure paths the report wrote for it; ``experiment_pages``: the experiment pages, linked."""
    rendered = []
    for s in suites:
        runs: pd.DataFrame = s["runs"]
        failed = runs[runs["status"] != RunState.FINISHED]
        columns = [c for c in PROVENANCE if c in runs]
        prov = runs[columns].rename(columns=PROVENANCE)
        if "commit" in prov:
            prov["commit"] = prov["commit"].astype(str).str[:10]
        rendered.append({
            "name": s["name"], "experiments": s.get("experiments", ""), "description": s.get("description", ""),
            "provenance": s.get("provenance", ""), "runs": len(runs),
            "table": s["summary"].to_html(index=False, border=0) if len(s["summary"]) else "<p class='not'>no scored runs</p>",
            "tables": [(title, t.to_html(index=False, border=0)) for title, t in s.get("tables", [])],
            "figures": [str(Path(f).relative_to(out)) for f in s.get("figures", []) if Path(f).is_file()],
            "failed": failed[[c for c in ("run_id", "method.name", "error") if c in failed]].to_html(index=False, border=0)
            if len(failed) else "",
            "provenance_table": prov.to_html(index=False, border=0, float_format=lambda v: f"{v:.0f}")})
    experiments = [{"name": p.stem, "href": str(Path(p).relative_to(out)),
                    "suites": ", ".join(s["name"] for s in suites if p.stem in s.get("experiments", "").split(", "))}
                   for p in experiment_pages]
    sensitivity = sorted(str(p.relative_to(out)) for p in (out / "sensitivity").glob("*.png"))
    path = out / "index.html"
    path.write_text(TEMPLATE.render(stamp=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), results=results,
                                    suites=rendered, claims=claims, sensitivity=sensitivity,
                                    experiments=experiments))
    return path
