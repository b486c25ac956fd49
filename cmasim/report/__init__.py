"""`cmasim report`: one self-contained HTML page for any output folder.

`build_report(folder)` recognises what the folder holds — a `run` (metrics.json), a
`compare` (compare.json), a `replay` (replay.json) or a `sweep` (results/*.parquet) — and
returns the HTML text: inline CSS, figures as inline SVG (cmasim.report.plots, matplotlib),
no scripts and nothing fetched, so the file opens offline and prints. `data_of_report`
returns the numbers behind each figure, for tests that check them against the kernel-format
files of the same folder. Never prints.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from cmasim.mm import mmzone as mz
from cmasim.outdir import atomic_file
from cmasim.report.errors import ReportError

CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 1.5rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.8rem; margin: 0.5rem 0; }
td, th { border: 1px solid #ddd; padding: 0.15rem 0.5rem; text-align: right; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 0.5rem 0 1rem; } figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 0.8rem; color: #555; }
.note { font-size: 0.8rem; color: #555; }
@media print { h2 { break-before: auto; } figure { break-inside: avoid; } }
"""


def kind_of(folder: Path) -> str:
    if (folder / "compare.json").is_file():
        return "compare"
    if (folder / "replay.json").is_file():
        return "replay"
    if (folder / "metrics.json").is_file():
        return "run"
    if (folder / "results").is_dir() and any((folder / "results").glob("*.parquet")):
        return "sweep"
    raise ReportError(f"{folder}: not a cmasim output folder (no metrics.json, compare.json, replay.json or "
                      f"results/*.parquet)")


def _table(header: list[str], rows: list[list]) -> str:
    h = "".join(f"<th>{html.escape(str(x))}</th>" for x in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _load_pageblocks(folder: Path) -> dict | None:
    f = folder / "pageblocks.npz"
    if not f.is_file():
        return None
    with np.load(f) as z:
        data = {k: z[k] for k in z.files}
    return {when: {k[len(when) + 1:]: v for k, v in data.items() if k.startswith(when + "_")}
            for when in ("start", "first_cma", "end") if f"{when}_mt" in data}


def data_of_report(folder: Path) -> dict:
    """The numbers the run report draws: blocks per migratetype (end), requests, timeline size."""
    pb = _load_pageblocks(folder)
    out: dict = {}
    if pb is not None:
        mt = pb["end"]["mt"]
        out["blocks_by_type"] = {_mt(int(t)): int((mt == t).sum()) for t in np.unique(mt)}
    cr = folder / "cma_ranges.json"
    if cr.is_file():
        d = json.loads(cr.read_text())
        out["requests"] = len(d["requests"])
        out["busy_ranges"] = sum(1 for r in d["ranges"] if r["outcome"] == "busy")
    return out


def _mt(t: int) -> str:
    return mz.MIGRATETYPE_NAMES[t] if 0 <= t < len(mz.MIGRATETYPE_NAMES) else "Isolate"


def _run_sections(folder: Path) -> tuple[str, list[str]]:
    from cmasim.report import plots

    m = json.loads((folder / "metrics.json").read_text())
    title = f"{m['scenario']} under {m['policy']}, seed {m['seed']}"
    parts = [f"<p>{m['events']:,} events, {m['sim_time_s']} s simulated.</p>"]
    rows = []
    for name, c in m.get("cma", {}).items():
        rows.append([name, c["requests"], c["success"], c["fail"]["busy"], c["fail"]["no_free_range"],
                     c["fail"]["nomem"], c["busy_retries"], c["latency"]["p50_ms"], c["latency"]["p99_ms"]])
    if rows:
        parts.append("<h2>cma_alloc()</h2>" + _table(["area", "requests", "ok", "fail: busy", "fail: no range",
                                                     "fail: no memory", "busy retries", "p50 ms", "p99 ms"], rows))
    cr = json.loads((folder / "cma_ranges.json").read_text()) if (folder / "cma_ranges.json").is_file() else None
    pb = _load_pageblocks(folder)
    if pb is not None:
        parts.append("<h2>Pageblocks</h2>")
        first = ("before the first cma_alloc()", pb["first_cma"]) if "first_cma" in pb else ("start", pb["start"])
        parts.append(_figure(plots.pageblock_map([first, ("end of the run", pb["end"])],
                                                 cr["areas"] if cr else [], cr["ranges"] if cr else []),
                             "Every pageblock as one cell, coloured by migratetype; the dark part is the share of its "
                             "pages in use, a red corner marks a pinned page, a black line a device buffer. CMA "
                             "blocks are outlined; lines under blocks mark ranges cma_alloc() took (green) or found "
                             "busy (red)."))
        counts = data_of_report(folder)["blocks_by_type"]
        parts.append(_table(["migratetype", "blocks at end"], [[k, f"{v:,}"] for k, v in counts.items()]))
    pbt = folder / "pageblocks_timeline.npz"
    if pbt.is_file():
        with np.load(pbt) as z:
            t_ns = z["t_ns"]
            snaps = [(f"t = {t / 1e6:,.1f} ms", {k: z[k][i] for k in z.files if k != "t_ns"})
                     for i, t in enumerate(t_ns)]
        parts.append("<h2>Pageblocks over time</h2>")
        parts.append(_figure(plots.pageblock_map(snaps, cr["areas"] if cr else [], cr["ranges"] if cr else [],
                                                 per_row=4, until_ms=[float(t) / 1e6 for t in t_ns]),
                             "The pageblock map at evenly spaced times of the run (run --timeline), same "
                             "colours as above; each map marks the ranges cma_alloc() had tried by then."))
    tl = folder / "timeline.npz"
    if tl.is_file():
        with np.load(tl) as z:
            cols, data = list(z["columns"]), z["data"]
        if len(data) > 1:
            t = data[:, 0] / 1e6
            orders = data[:, cols.index("free_order0"):]
            parts.append("<h2>Over time</h2>")
            parts.append(_figure(plots.buddy_heatmap(t, orders), "Free blocks per order, summed over zones."))
            if m.get("cma"):
                parts.append(_figure(plots.cma_usage(t, data[:, cols.index("nr_free_cma")],
                                                     data[:, cols.index("cma_borrowed")],
                                                     data[:, cols.index("cma_taken")]),
                                     "CMA pages: taken by cma_alloc(), borrowed by movable allocations, free."))
    elif pb is not None:
        parts.append('<p class="note">Run with <code>--timeline MS</code> for free memory by order and CMA use '
                     'over time.</p>')
    if cr and cr["requests"]:
        parts.append("<h2>cma_alloc() requests</h2>")
        parts.append(_figure(plots.latency_cdf(cr["requests"]), "Latency of every cma_alloc() call; crosses mark "
                                                               "failed calls at their latency."))
        parts.append(_figure(plots.busy_histogram(cr["requests"]), "-EBUSY ranges met by each call before it "
                                                                   "succeeded or gave up."))
    ex = folder / "explain.jsonl"
    if ex.is_file():
        from cmasim.explain import ExplainError, read_jsonl, summarize

        try:
            recs = read_jsonl(folder)
        except ExplainError as e:
            raise ReportError(str(e)) from None
        if recs:
            sm = summarize(recs)
            parts.append("<h2>Why ranges were busy (cmasim explain)</h2>")
            parts.append(_table(["cause", "ranges"], [[k, v] for k, v in sm["by_cause"].items()]))
            parts.append(_table(["first busy page", "ranges"], [[k, v] for k, v in sm["by_page"].items()]))
            parts.append(_table(["would have been avoided by", "ranges"], [[k, v] for k, v in sm["avoided_by"].items()]))
    vm = m.get("vmstat", {})
    parts.append("<h2>/proc/vmstat (non-zero)</h2>" + _table(["counter", "value"],
                                                             [[k, f"{v:,}"] for k, v in vm.items() if v]))
    return title, parts


def _compare_sections(folder: Path) -> tuple[str, list[str]]:
    from cmasim.compare import cell, footer_text
    from cmasim.report import plots

    r = json.loads((folder / "compare.json").read_text())
    title = f"{r['scenario']} — {', '.join(r['policies'])}"
    seeds = len(r["seeds"])
    parts = [f"<p>{html.escape(r.get('description', ''))}</p>",
             _figure(plots.compare_dots(r), "Each headline metric per policy: the dot is the mean, the bar its "
                                           "95% interval; grey and † = not significantly different from the "
                                           f"baseline {r['baseline']}."),
             _table(["metric"] + r["policies"],
                    [[row["label"]] + [cell(row["policies"][p], seeds) for p in r["policies"]]
                     for row in r["metrics"].values()]),
             f'<p class="note">{html.escape(footer_text(r))}</p>']
    return title, parts


def _replay_sections(folder: Path) -> tuple[str, list[str]]:
    from cmasim.report import plots

    d = json.loads((folder / "replay.json").read_text())
    title = f"replay of {Path(d.get('trace', 'trace')).name} under {d.get('policy', '?')}"
    parts = []
    fid = d.get("fidelity")
    if fid:
        parts.append(_figure(plots.fidelity_bars(fid), "The kernel's own trace events against the simulation of "
                                                       "the same requests; error bars: the kernel count's 95% "
                                                       "Poisson interval where it is small."))
        parts.append(_table(["statistic", "kernel", "sim", "rel. error", "ok"],
                            [[k, v["kernel"], v["sim"], "–" if v["rel_err"] is None else f"{100 * v['rel_err']:.1f}%",
                              v["ok"]] for k, v in fid.items()]))
    else:
        parts.append('<p class="note">No fidelity statistics: replay with --snapshot DIR --fidelity.</p>')
    r = d.get("replayed", {})
    parts.append(_table(["replayed", "count"], [[k, f"{v:,}"] for k, v in r.items()]))
    return title, parts


def _sweep_manifest(folder: Path) -> dict:
    """The newest `sweeps/<spec_hash>.json` record (cmasim.sweep.driver.write_spec_record), or {}."""
    recs = sorted((folder / "sweeps").glob("*.json"), key=lambda f: f.stat().st_mtime) \
        if (folder / "sweeps").is_dir() else []
    return json.loads(recs[-1].read_text()) if recs else {}


def _sweep_sections(folder: Path) -> tuple[str, list[str]]:
    from cmasim.report import plots
    from cmasim.sweep.summary import INF, boundary_of

    try:
        import duckdb
    except ImportError:
        raise ReportError(f"{folder}: a sweep folder needs duckdb to read results/*.parquet") from None
    con = duckdb.connect()
    rel = con.sql(f"SELECT * FROM read_parquet('{(folder / 'results').as_posix()}/*.parquet', union_by_name=true)")
    cols = rel.columns
    rows = [dict(zip(cols, t)) for t in rel.fetchall()]
    title = f"{folder.name} ({len(rows):,} runs)"
    rows = [r for r in rows if r.get("status") in (None, "ok")]
    man = _sweep_manifest(folder)
    sm = man.get("summary") or {}
    axes = list(man.get("axes") or sorted({k for r in rows for k in json.loads(r.get("point") or "{}")}))
    axes = [a for a in axes if a in cols and len({r[a] for r in rows}) > 1
            and all(isinstance(r[a], (int, float)) for r in rows if r[a] is not None)]
    metric = sm.get("metric") or ("cma_success_rate" if "cma_success_rate" in cols else None)
    if metric not in cols:
        metric = None
    parts = []
    if man:
        parts.append(f"<p>Sweep <code>{html.escape(man.get('name', ''))}</code> of scenario "
                     f"<code>{html.escape(man.get('scenario', ''))}</code>: {man.get('points', '?')} points × "
                     f"{len(man.get('policies', []))} policies × {len(man.get('seeds', []))} seeds.</p>")
    if not (axes and metric):
        parts.append('<p class="note">No swept numeric axis or metric column found to plot.</p>')
        return title, parts
    axis = sm.get("axis") if sm.get("axis") in axes else axes[0]
    threshold = (sm.get("thresholds") or [0.99])[0]
    crosses, scan = sm.get("crosses", "below"), sm.get("scan", "up")
    policies = man.get("policies") or sorted({r["policy"] for r in rows})
    rate = metric == "cma_success_rate" and "cma_requests" in cols
    band = ("Wilson 95% interval of the pooled cma_alloc() successes" if rate
            else "range of the per-seed means")
    by = [b for b in sm.get("by", []) if b in cols]
    groups = sorted({tuple(r.get(b) for b in by) for r in rows}, key=lambda g: tuple(str(v) for v in g))
    table, bnd = [], {}
    for grp in groups:  # the sweep summary's rule: per policy and `by` group, other axes pooled per seed
        for pol in policies:
            xs, y = _seed_curve(rows, pol, axis, metric, dict(zip(by, grp)))
            if xs:
                b = boundary_of(xs, y, threshold, crosses, scan)
                table.append([pol, *grp, ("> max" if scan == "up" else "< min") if b == INF else f"{b:g}"])
                if not by:
                    bnd[pol] = b
    parts.append(_table(["policy", *by, f"{axis} boundary: mean {metric} {'<' if crosses == 'below' else '>'} "
                                        f"{threshold:g}"], table))
    for ax in [axis] + [a for a in axes if a != axis][:2]:
        parts.append(_figure(plots.sweep_curves(rows, ax, metric, rate, bnd if ax == axis else None, threshold,
                                                policies),
                             f"{metric} against {ax} per policy, pooled over seeds and the other axes; band: "
                             f"{band}." + (f" Dashed: the {threshold:g} threshold; dotted verticals: each "
                                           f"policy's boundary along {ax} (as the sweep summary computes it)."
                                           if ax == axis and bnd else "")))
    if len(axes) >= 2:
        other = max((a for a in axes if a != axis), key=lambda a: len({r[a] for r in rows}))
        lines = {}
        for pol in policies:
            line = []
            for v in sorted({r[other] for r in rows if r[other] is not None}):
                xs, y = _seed_curve(rows, pol, axis, metric, {other: v})
                if xs:
                    b = boundary_of(xs, y, threshold, crosses, scan)
                    line.append((v, None if b == INF else b))
            lines[pol] = line
        parts.append(_figure(plots.sweep_heatmap(rows, axis, other, metric, policies, lines, threshold),
                             f"Mean {metric} for each ({axis}, {other}) cell per policy, pooled over seeds and the "
                             f"other axes; the black line joins, for each {other}, the {axis} where the mean first "
                             f"crosses {threshold:g} (the sweep summary's boundary rule); ▸ marks rows where it never "
                             f"does inside the swept range."))
    return title, parts


def _seed_curve(rows: list[dict], policy: str, axis: str, metric: str, fixed: dict) -> tuple[list, np.ndarray]:
    """Per seed, the mean of `metric` at each value of `axis` over the rows of `policy` that match
    `fixed` (the other axes pooled): (xs, y[seed, x]) as cmasim.sweep.summary.boundary_of takes them."""
    cells: dict[tuple, list[float]] = {}
    for r in rows:
        if r["policy"] != policy or r.get(axis) is None or r.get(metric) is None:
            continue
        if any(r.get(k) != v for k, v in fixed.items()):
            continue
        cells.setdefault((r[axis], r["seed"]), []).append(float(r[metric]))
    xs = sorted({x for x, _ in cells})
    seeds = sorted({s for _, s in cells})
    y = np.array([[np.mean(cells[(x, s)]) if (x, s) in cells else np.nan for x in xs] for s in seeds], dtype=float)
    return xs, y


def build_report(folder: str | Path) -> str:
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"{folder}: no such folder")
    kind = kind_of(folder)
    title, parts = {"run": _run_sections, "compare": _compare_sections, "replay": _replay_sections,
                    "sweep": _sweep_sections}[kind](folder)
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>cmasim: {html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>cmasim {kind}: {html.escape(title)}</h1>\n{body}\n"
            "<p class=\"note\">Made by cmasim report.</p></body></html>\n")


def write_report(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write the report (default FOLDER/report.html) via a temporary file renamed into place."""
    text = build_report(folder)
    out = Path(out) if out is not None else Path(folder) / "report.html"
    try:
        with atomic_file(out) as tmp:  # Ctrl-C: no half-written page left behind
            tmp.write_text(text, encoding="utf-8")
    except OSError as e:
        raise ReportError(f"{out}: cannot write: {e.strerror or e}") from None
    return out
