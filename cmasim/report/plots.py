"""The report's figures: matplotlib drawn to inline SVG strings (no JavaScript, no files).

Each function takes plain data (what the output folder holds) and returns an `<svg>` string.
matplotlib runs headless (Agg); fonts are not embedded (SVG text), rasters (the pageblock map)
are embedded as PNG data inside the SVG, so one HTML file carries everything.
"""

from __future__ import annotations

import io

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from cmasim.mm import mmzone as mz  # noqa: E402

# Migratetype colours (light: free pages; dark: used pages of that block).
MT_COLOURS = {"Unmovable": "#d95f02", "Movable": "#1b9e77", "Reclaimable": "#7570b3", "HighAtomic": "#e6ab02",
              "CMA": "#1f78b4", "Isolate": "#999999"}
PINNED = "#e31a1c"
DEVICE = "#222222"

plt.rcParams.update({"font.size": 9, "svg.fonttype": "none", "figure.dpi": 100})


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _mt_name(mt: int) -> str:
    return mz.MIGRATETYPE_NAMES[mt] if 0 <= mt < len(mz.MIGRATETYPE_NAMES) else "Isolate"


def pageblock_image(pb: dict[str, np.ndarray], cols: int, cell: int = 6) -> np.ndarray:
    """RGB image: one cell per pageblock, the block's migratetype colour, filled from the bottom
    in proportion to its used pages (dark), pinned pages red, device buffers black."""
    n = len(pb["mt"])
    rows = -(-n // cols)
    img = np.ones((rows * cell, cols * cell, 3))
    for i in range(n):
        r, c = divmod(i, cols)
        base = np.array(to_rgb(MT_COLOURS.get(_mt_name(int(pb["mt"][i])), "#cccccc")))
        y0, x0 = r * cell, c * cell
        img[y0:y0 + cell, x0:x0 + cell] = 0.35 * base + 0.65  # light: free
        used = mz.PAGEBLOCK_NR_PAGES - int(pb["free"][i])
        h = round((cell - 1) * used / mz.PAGEBLOCK_NR_PAGES)
        if h:
            img[y0 + cell - 1 - h:y0 + cell - 1, x0:x0 + cell - 1] = 0.8 * base
        if pb["pinned"][i]:
            img[y0:y0 + 2, x0:x0 + 2] = to_rgb(PINNED)
        if pb["device"][i]:
            img[y0 + cell - 2:y0 + cell - 1, x0:x0 + cell - 1] = to_rgb(DEVICE)
        img[y0 + cell - 1, x0:x0 + cell] = 1.0  # gaps between cells
        img[y0:y0 + cell, x0 + cell - 1] = 1.0
    return img


def _row_segments(first: int, last: int, cols: int):
    """Blocks first..last of a map `cols` wide, as (row, first column, last column) per row."""
    b = first
    while b <= last:
        r, c0 = divmod(b, cols)
        c1 = min(cols - 1, c0 + last - b)
        yield r, c0, c1
        b += c1 - c0 + 1


def pageblock_map(maps: list[tuple[str, dict]], areas: list[dict], ranges: list[dict], per_row: int = 2,
                  until_ms: list[float] | None = None) -> str:
    """Small multiples of the pageblock map (start and end of a run, or a run's timeline), `per_row`
    maps to a row; `ranges` (cma_alloc() ranges with their "t_ms") are drawn on every map, or with
    `until_ms` on each map only those tried up to that map's time."""
    n = len(maps[0][1]["mt"])
    cols = 64 if n <= 4096 else 128
    cell = 6
    rows = -(-n // cols)
    width = 9.0
    ncol = min(per_row, len(maps))
    nrow = -(-len(maps) // ncol)
    height = nrow * (0.45 + (width / ncol - 0.2) * rows / cols) + 0.45
    fig, axes = plt.subplots(nrow, ncol, figsize=(width, height), squeeze=False)
    for ax in axes.flat[len(maps):]:
        ax.axis("off")
    for k, (ax, (title, pb)) in enumerate(zip(axes.flat, maps)):
        ax.imshow(pageblock_image(pb, cols, cell), interpolation="nearest")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
        for a in areas:  # outline the CMA area: one rectangle per map row it covers
            first, last = a["base_pfn"] >> mz.PAGEBLOCK_ORDER, (a["base_pfn"] + a["count"] - 1) >> mz.PAGEBLOCK_ORDER
            for r, c0, c1 in _row_segments(first, last, cols):
                ax.add_patch(plt.Rectangle((c0 * cell - 0.5, r * cell - 0.5), (c1 - c0 + 1) * cell, cell, fill=False,
                                           lw=0.6, edgecolor=MT_COLOURS["CMA"]))
        for rg in ranges:  # ranges cma_alloc() tried: a line under their blocks
            if until_ms is not None and rg["t_ms"] > until_ms[k]:
                continue
            colour = "#33a02c" if rg["outcome"] == "ok" else PINNED
            first, last = rg["pfn"] >> mz.PAGEBLOCK_ORDER, (rg["pfn"] + rg["count"] - 1) >> mz.PAGEBLOCK_ORDER
            for r, c0, c1 in _row_segments(first, last, cols):
                ax.plot([c0 * cell - 0.5, c1 * cell + cell - 1.5], [r * cell + cell - 1] * 2, color=colour, lw=1.2,
                        solid_capstyle="butt")
    legend = [Patch(color=MT_COLOURS[k], label=k) for k in ("Unmovable", "Movable", "Reclaimable", "CMA", "Isolate")]
    legend += [Patch(color=PINNED, label="pinned page / busy range"), Patch(color="#33a02c", label="range cma_alloc took"),
               Patch(color=DEVICE, label="device buffer")]
    fig.legend(handles=legend, loc="lower center", ncol=4, frameon=False, bbox_to_anchor=(0.5, -0.08))
    fig.suptitle(f"{n:,} pageblocks of {mz.PAGEBLOCK_NR_PAGES} pages, {cols} per row; shade = used share",
                 fontsize=8, y=1.0)
    return _svg(fig)


def buddy_heatmap(t_ms: np.ndarray, orders: np.ndarray) -> str:
    """Free blocks per order over time (buddyinfo as a heat map, log colour)."""
    fig, ax = plt.subplots(figsize=(7.5, 2.6))
    im = ax.imshow(np.log10(1 + orders.T), aspect="auto", origin="lower", interpolation="nearest",
                   extent=(t_ms[0], t_ms[-1] if len(t_ms) > 1 else t_ms[0] + 1, -0.5, orders.shape[1] - 0.5),
                   cmap="viridis")
    ax.set_xlabel("simulated time (ms)")
    ax.set_ylabel("order")
    fig.colorbar(im, ax=ax, label="log10(1 + free blocks)")
    ax.set_title("free blocks by order (/proc/buddyinfo, summed over zones)")
    return _svg(fig)


def cma_usage(t_ms: np.ndarray, free: np.ndarray, borrowed: np.ndarray, taken: np.ndarray) -> str:
    fig, ax = plt.subplots(figsize=(7.5, 2.4))
    mib = 4096 / (1 << 20)
    ax.stackplot(t_ms, taken * mib, borrowed * mib, free * mib, labels=["taken by cma_alloc", "borrowed (movable)",
                                                                       "free"],
                 colors=[DEVICE, MT_COLOURS["Movable"], "#a6cee3"])
    ax.set_xlabel("simulated time (ms)")
    ax.set_ylabel("MiB")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)
    ax.set_title("CMA areas over time")
    return _svg(fig)


def latency_cdf(requests: list[dict]) -> str:
    """cma_alloc() latency CDF per request size class; failures marked with a cross."""
    fig, ax = plt.subplots(figsize=(7.5, 2.8))
    sizes = sorted({r["pages"] for r in requests})
    classes = {"all sizes": requests}
    if 1 < len(sizes) <= 4 and len(requests) >= 3 * len(sizes):
        classes = {f"{s / 256:g} MiB": [r for r in requests if r["pages"] == s] for s in sizes}
    elif len(sizes) > 4 and len(requests) >= 6:
        med = float(np.median([r["pages"] for r in requests]))
        classes = {f"≤ {med / 256:.0f} MiB": [r for r in requests if r["pages"] <= med],
                   f"> {med / 256:.0f} MiB": [r for r in requests if r["pages"] > med]}
    for label, rs in classes.items():
        lat = np.sort([r["latency_ms"] for r in rs])
        if len(lat):
            line, = ax.step(np.r_[lat[0], lat], np.arange(len(lat) + 1) / len(lat), where="post", marker=".",
                            markevery=list(range(1, len(lat) + 1)), label=f"{label} (n={len(lat)})")
            fails = [r["latency_ms"] for r in rs if r["ret"] != 0]
            if fails:
                ax.plot(fails, [1.02] * len(fails), "x", color=line.get_color(), label=f"{label}: {len(fails)} failed")
    ax.set_xlabel("cma_alloc() latency (ms, simulated)")
    ax.set_ylabel("share of requests ≤ x")
    ax.set_ylim(0, 1.06)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("cma_alloc() latency, cumulative")
    return _svg(fig)


def busy_histogram(requests: list[dict]) -> str:
    fig, ax = plt.subplots(figsize=(7.5, 2.2))
    b = [r.get("busy_retries", 0) for r in requests]
    top = max(b) if b else 0
    ax.hist(b, bins=np.arange(-0.5, top + 1.5, 1), color=PINNED, rwidth=0.85)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("busy retries (-EBUSY ranges) in one cma_alloc()")
    ax.set_ylabel("requests")
    ax.set_title("busy retries per request")
    return _svg(fig)


def compare_dots(report: dict) -> str:
    """One panel per headline metric: each policy's mean with its interval; † = not significant."""
    rows = [(name, row) for name, row in report["metrics"].items()
            if any(st["mean"] is not None for st in row["policies"].values())]
    pols = report["policies"]
    ncol = 3
    nrow = -(-len(rows) // ncol) or 1
    fig, axes = plt.subplots(nrow, ncol, figsize=(7.5, 1.15 + 0.35 * len(pols) * nrow), squeeze=False)
    for ax in axes.flat[len(rows):]:
        ax.axis("off")
    for ax, (name, row) in zip(axes.flat, rows):
        for i, p in enumerate(pols):
            st = row["policies"][p]
            if st["mean"] is None:
                continue
            colour = "#999999" if st.get("significant_vs_baseline") is False else "#1f78b4" if i else "#222222"
            if st["ci_low"] is not None:
                ax.plot([st["ci_low"], st["ci_high"]], [i, i], color=colour, lw=2)
            ax.plot([st["mean"]], [i], "o", color=colour, ms=4)
        ax.set_yticks(range(len(pols)))
        ax.set_yticklabels([p + (" †" if row["policies"][p].get("significant_vs_baseline") is False else "")
                            for p in pols], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(row["label"], fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    return _svg(fig)


def fidelity_bars(fid: dict) -> str:
    """Kernel vs simulation per statistic, the kernel's 95% Poisson interval as an error bar."""
    keys = [k for k in fid if fid[k].get("kernel") is not None]
    fig, axes = plt.subplots(1, len(keys), figsize=(7.5, 2.4), squeeze=False)
    for ax, k in zip(axes[0], keys):
        v = fid[k]
        kern, sim = float(v["kernel"]), float(v["sim"])
        ax.bar([0, 1], [kern, sim], color=["#666666", "#1f78b4"], width=0.6)
        if "kernel_95" in v:
            lo, hi = v["kernel_95"]
            ax.errorbar([0], [kern], yerr=[[kern - lo], [hi - kern]], color="black", capsize=3)
        ax.set_xticks([0, 1])
        ax.set_xticklabels(["kernel", "sim"], fontsize=7)
        ax.set_title(k.replace("_", " "), fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return _svg(fig)


def sweep_curves(rows: list[dict], axis: str, metric: str, rate: bool = False, boundaries: dict | None = None,
                 threshold: float | None = None, policies: list[str] | None = None) -> str:
    """Mean of `metric` against one swept axis, per policy. Band: with `rate` (a cma_alloc() success
    rate with its `cma_requests` column), the Wilson 95% interval of the successes pooled over seeds and
    the other axes; otherwise the min-max of the per-seed means. `boundaries` {policy: x} and
    `threshold` draw the sweep summary's boundary."""
    from cmasim.stats import wilson

    fig, ax = plt.subplots(figsize=(7.5, 2.8))
    for k, pol in enumerate(policies or sorted({r["policy"] for r in rows})):
        pts: dict[float, list[tuple[float, float]]] = {}
        for r in rows:
            if r["policy"] == pol and r.get(axis) is not None and r.get(metric) is not None:
                pts.setdefault(float(r[axis]), []).append((float(r[metric]), float(r.get("cma_requests") or 0)))
        if not pts:
            continue
        xs = sorted(pts)
        colour = f"C{k % 10}"
        if rate:
            n = [sum(q for _, q in pts[x]) for x in xs]
            ok = [sum(v * q for v, q in pts[x]) for x in xs]
            mean = [o / t if t else np.nan for o, t in zip(ok, n)]
            ci = [wilson(o, t) or (np.nan, np.nan) for o, t in zip(ok, n)]
            lo, hi = [c[0] for c in ci], [c[1] for c in ci]
        else:
            by_seed = {x: [v for v, _ in pts[x]] for x in xs}
            mean = [np.mean(by_seed[x]) for x in xs]
            lo, hi = [min(by_seed[x]) for x in xs], [max(by_seed[x]) for x in xs]
        ax.plot(xs, mean, marker="o", ms=3, label=pol, color=colour)
        ax.fill_between(xs, lo, hi, alpha=0.2, color=colour)
        b = (boundaries or {}).get(pol)
        if b is not None and np.isfinite(b):
            ax.axvline(b, color=colour, ls=":", lw=1)
    if threshold is not None and boundaries:
        ax.axhline(threshold, color="#444444", ls="--", lw=0.8)
    if len({float(r[axis]) for r in rows if r.get(axis) is not None}) > 2:
        vals = sorted({float(r[axis]) for r in rows if r.get(axis) is not None})
        if vals[0] > 0 and vals[-1] / vals[0] >= 50:
            ax.set_xscale("log")
    ax.set_xlabel(axis)
    ax.set_ylabel(metric)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _svg(fig)


def sweep_heatmap(rows: list[dict], x_axis: str, y_axis: str, metric: str, policies: list[str],
                  lines: dict[str, list[tuple[float, float | None]]], threshold: float) -> str:
    """One heat map per policy: mean `metric` per (x, y) cell (values written in the cells), and the
    boundary line {policy: [(y, x or None)]}: for each y, the x where the mean crosses `threshold`."""
    xs = sorted({r[x_axis] for r in rows if r.get(x_axis) is not None})
    ys = sorted({r[y_axis] for r in rows if r.get(y_axis) is not None})
    pols = [p for p in policies if any(r["policy"] == p for r in rows)]
    ncol = min(3, len(pols))
    nrow = -(-len(pols) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.1 * ncol + 0.8, 0.35 * len(ys) * nrow + 1.2 * nrow),
                             squeeze=False)
    vals = [float(r[metric]) for r in rows if r.get(metric) is not None]
    vmin, vmax = (min(vals), max(vals)) if vals else (0.0, 1.0)
    im = None
    for ax in axes.flat[len(pols):]:
        ax.axis("off")
    for ax, pol in zip(axes.flat, pols):
        grid = np.full((len(ys), len(xs)), np.nan)
        for i, yv in enumerate(ys):
            for j, xv in enumerate(xs):
                v = [float(r[metric]) for r in rows if r["policy"] == pol and r.get(x_axis) == xv
                     and r.get(y_axis) == yv and r.get(metric) is not None]
                if v:
                    grid[i, j] = np.mean(v)
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="RdYlGn", vmin=vmin, vmax=vmax,
                       interpolation="nearest")
        for i in range(len(ys)):
            for j in range(len(xs)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2g}", ha="center", va="center", fontsize=6)
        pts = [(xs.index(b) if b in xs else None, ys.index(yv)) for yv, b in lines.get(pol, [])]
        seg = [q for j, i in pts if j is not None for q in ((j - 0.5, i - 0.5), (j - 0.5, i + 0.5))]
        if seg:  # a step line along the cell edges: left of the first cell past the threshold, row by row
            ax.plot([p[0] for p in seg], [p[1] for p in seg], color="black", lw=2)
        for j, i in pts:
            if j is None:
                ax.text(len(xs) - 0.45, i, "▸", va="center", fontsize=8)
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels([f"{v:g}" for v in xs], fontsize=7)
        ax.set_yticks(range(len(ys)))
        ax.set_yticklabels([f"{v:g}" for v in ys], fontsize=7)
        ax.set_xlabel(x_axis, fontsize=8)
        ax.set_ylabel(y_axis, fontsize=8)
        ax.set_title(pol, fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), label=f"{metric} (threshold {threshold:g})", shrink=0.8)
    return _svg(fig)
