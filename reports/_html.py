"""The self-contained HTML report of one run, or of several runs to compare.

Sections come from the registry in ``reports/_sections``; this module only lays them
out, and leaves out a section that has nothing to show. plotly.js (the minified bundle
plotly ships) is inlined once in the page head, compressed (:func:`_plotly_scripts`),
every figure with ``include_plotlyjs=False``, and the sorting script is a few lines
inline, so the file opens offline and nothing is fetched.
"""
from __future__ import annotations

import base64
import functools
import gzip
import html
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from mtl_models import atomic_write_text

from ._run import RunData, load_run
from ._sections import ReportContext, sections

REPORT_FILE = "report.html"

_CSS = """
*,*:before,*:after{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1280px;color:#222;padding:0 1em;overflow-wrap:break-word}
.table-wrap{max-width:100%;overflow-x:auto;margin:.5em 0} .table-wrap>table.data{margin:0}
pre,code{white-space:pre-wrap;word-break:break-word} .plotly-graph-div{max-width:100%}
.words{color:#555;font-size:.92em} .glossary{font-size:.88em;margin:.8em 0} .glossary dt{font-weight:600;margin-top:.35em}
.glossary dd{margin-left:1.5em}
h1{font-size:1.6em} h2{font-size:1.25em;margin-top:2.2em;border-bottom:1px solid #ddd} h3{font-size:1.05em}
nav a{margin-right:1em;font-size:.9em}
table.data{border-collapse:collapse;font-size:.82em;width:100%;margin:.5em 0}
.data th,.data td{border-bottom:1px solid #eee;padding:.3em .45em;text-align:left;vertical-align:top}
.data th{background:#fafafa;position:sticky;top:0}
.sortable th{cursor:pointer;user-select:none} .sortable th.asc:after{content:" \\25B2"} .sortable th.desc:after{content:" \\25BC"}
.data tr.baseline{background:#f3f7ff;font-weight:600}
.data tr.status-pruned,.data tr.status-errored{color:#888} .error{color:#b00}
.best{font-size:1.05em;background:#f0fff0;padding:.6em;border-left:4px solid #2ca02c}
.live{color:#b36b00} .note{color:#555;font-size:.88em} .meta{color:#666;font-size:.85em;font-weight:normal}
.verdict{background:#f7f7fb;border-left:4px solid #4c78a8;padding:.3em .8em;margin:.8em 0}
.verdict p{margin:.45em 0} .data tr.best{background:#f0fff0}
.better{color:#1a7f37;font-weight:600} .worse{color:#b00;font-weight:600} .same{color:#555} .ci{color:#777;font-size:.9em}
"""

# Sort a table's second tbody by a clicked column; the first tbody (baselines) stays pinned.
_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('thead th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var body = table.tBodies[table.tBodies.length - 1];
      var asc = !th.classList.contains('asc');
      table.querySelectorAll('thead th').forEach(function(h){ h.classList.remove('asc', 'desc'); });
      th.classList.add(asc ? 'asc' : 'desc');
      var numeric = th.dataset.type === 'num';
      function key(row){
        var cell = row.cells[col]; var v = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent;
        if (!numeric) return v.toLowerCase();
        var x = parseFloat(v); return isNaN(x) ? null : x;
      }
      Array.from(body.rows).sort(function(a, b){
        var x = key(a), y = key(b);
        if (x === null) return 1; if (y === null) return -1;
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      }).forEach(function(row){ body.appendChild(row); });
    });
  });
});
"""


def build_report(runs: Sequence[RunData], title: str, meta: dict[str, Any]) -> str:
    """The report as one HTML string: every registered section, in order."""
    ctx = ReportContext(list(runs))
    parts, nav, figure = [], [], 0
    for section in sections():
        blocks = section.render(ctx)
        if not blocks:
            continue
        nav.append(f"<a href='#{section.key}'>{html.escape(section.title)}</a>")
        parts.append(f"<section id='{section.key}'><h2>{html.escape(section.title)}</h2>")
        for block in blocks:
            if isinstance(block, go.Figure):
                figure += 1
                parts.append(
                    block.to_html(
                        full_html=False, include_plotlyjs=False, div_id=f"fig-{section.key}-{figure}",
                        config={"displaylogo": False, "responsive": True},
                    ).replace("<script>", f'<script type="{_DEFERRED}">').replace(
                        '<script type="text/javascript">', f'<script type="{_DEFERRED}">')
                )
            else:
                parts.append(_wrap_tables(block))
        parts.append("</section>")
    meta_line = " &middot; ".join(f"{html.escape(k)}: {html.escape(str(v))}" for k, v in meta.items())

    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>{_plotly_scripts()}</head><body>"
        f"<h1>{html.escape(title)}</h1><p class='meta'>{meta_line}</p>{_data_warnings(runs)}<nav>{''.join(nav)}</nav>"
        f"{''.join(parts)}<script>{_SORT_JS}</script></body></html>"
    )


_DEFERRED = "text/x-mtlsearch-figure"

# Unpack plotly.js (gzip, base64) with the browser's DecompressionStream, run it, then each
# figure's script in page order. Every current browser has DecompressionStream (Chrome 80,
# Firefox 113, Safari 16.4); where one lacks it, the page says so instead of failing silently.
_LOADER_JS = """
(function(){
  var packed = document.getElementById('plotlyjs-gz');
  function run(code){ var s = document.createElement('script'); s.text = code; document.head.appendChild(s); }
  function figures(){
    document.querySelectorAll('script[type="%s"]').forEach(function(old){
      var s = document.createElement('script'); s.text = old.text; old.parentNode.replaceChild(s, old);
    });
  }
  if (!('DecompressionStream' in window)) {
    document.addEventListener('DOMContentLoaded', function(){ document.body.insertAdjacentHTML('afterbegin',
      "<p class='error'>This browser cannot unpack the report's inlined plotly.js (no DecompressionStream): figures are not drawn.</p>"); });
    return;
  }
  var bytes = Uint8Array.from(atob(packed.textContent.trim()), function(c){ return c.charCodeAt(0); });
  var text = new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'))).text();
  var ready = new Promise(function(resolve){
    if (document.readyState !== 'loading') resolve(); else document.addEventListener('DOMContentLoaded', resolve);
  });
  Promise.all([text, ready]).then(function(r){ run(r[0]); figures(); });
})();
""" % _DEFERRED


@functools.lru_cache(maxsize=1)
def _plotly_scripts() -> str:
    """plotly.js, inlined once: the minified bundle plotly ships (4.8 MB), gzip-compressed and
    base64-encoded (about 2 MB) with a few lines that unpack it in the browser, so the file
    still opens offline and is 2.5 times smaller. Figures wait for it (``_DEFERRED``)."""
    source = get_plotlyjs()
    version = re.search(r"plotly\.js v[0-9.]+", source[:200])
    packed = base64.b64encode(gzip.compress(source.encode(), compresslevel=6, mtime=0)).decode()
    return (f"<script id='plotlyjs-gz' type='application/octet-stream'>{packed}</script>"
            f"<script>/* {version.group(0) if version else 'plotly.js'} (MIT licence), gzip + base64 above */{_LOADER_JS}</script>")


def _wrap_tables(block: str) -> str:
    """Every table in its own horizontally scrolling container, so a wide table (the
    leaderboard has a column per task and split) scrolls inside the page instead of
    widening it: the page fits a 1400 px window."""
    return block.replace("<table", "<div class='table-wrap'><table").replace("</table>", "</table></div>")


def _data_warnings(runs: Sequence[RunData]) -> str:
    """The data's warnings as ``check-data`` and the run's log showed them (``run.json``), repeated here."""
    items = []
    for run in runs:
        prefix = f"{run.name}: " if len(runs) > 1 else ""
        items += [f"<li>{html.escape(prefix + str(w))}</li>" for w in run.info.get("data_warnings") or []]
    return f"<div class='data-warnings'><p>Data warnings:</p><ul>{''.join(items)}</ul></div>" if items else ""


def _meta(run: RunData) -> dict[str, Any]:
    exp = run.experiment
    meta: dict[str, Any] = {}
    if exp:
        meta.update(
            backbone=exp["backbone"]["name"],
            tasks=", ".join(t["name"] for t in exp["tasks"]),
            data=run.info.get("data") or exp["data"]["source"],
            epochs=exp["train"]["epochs"],
        )
    if run.info.get("started"):
        meta["started"] = run.info["started"]
    return meta


def write_report(
    run_dirs: str | Path | Sequence[str | Path], out: str | Path | None = None, evaluate: bool = True
) -> Path:
    """Write the report of one run (default ``RUN/report.html``) or a comparison of several (``out`` required).

    With ``evaluate``, the shortlisted configs are evaluated on the test split first
    (cached in ``RUN/evaluations.parquet``).
    """
    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(d) for d in run_dirs]
    if not dirs:
        raise ValueError("write_report needs at least one run directory.")
    if len(dirs) > 1 and out is None:
        raise ValueError("Comparing several runs needs an output file (--out compare.html).")
    names = _unique_names(dirs)
    runs = [load_run(d, evaluate=evaluate, name=n) for d, n in zip(dirs, names)]
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if len(runs) == 1:
        title = f"mtlsearch: {runs[0].name}"
        meta = {**_meta(runs[0]), "run": str(dirs[0]), "generated": generated}
    else:
        title = "mtlsearch: " + " vs ".join(r.name for r in runs)
        meta = {"runs": ", ".join(str(d) for d in dirs), "generated": generated}
    out = Path(out) if out is not None else dirs[0] / REPORT_FILE
    atomic_write_text(out, build_report(runs, title, meta))
    return out


def _unique_names(dirs: list[Path]) -> list[str]:
    """Names for runs: the experiment name, made unique with the directory name when they clash."""
    import json

    names = []
    for d in dirs:
        exp = d / "experiment.json"
        names.append(json.loads(exp.read_text()).get("name", d.name) if exp.is_file() else d.name)
    if len(set(names)) < len(names):
        names = [f"{n} ({d.name})" if names.count(n) > 1 else n for n, d in zip(names, dirs)]
    if len(set(names)) < len(names):
        names = [str(d) for d in dirs]
    return names
