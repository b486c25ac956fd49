"""Per-pageblock picture of the machine, for plots: what `page-types`/`page_owner` would show.

For every pageblock: its migratetype (ISOLATE when the isolate bit is set, as
`/proc/pagetypeinfo`'s "Number of blocks type" counts it, mm/vmstat.c
pagetypeinfo_showblockcount_print()), and how its 512 pages are used — free (buddy or
per-CPU lists), movable (anonymous or page cache, which cma_alloc() must migrate), pinned
(movable pages with a pin, which make a range busy), device (cma_alloc() buffers) and kernel
(every other allocated page). Read from the packed state in one vectorised pass; never
changes it. Used by `cmasim run` (start and end of a run) and the report.
"""

from __future__ import annotations

import numpy as np

from cmasim.mm import mmzone as mz

USE_KINDS = ("free", "movable", "pinned", "device", "kernel")
_MOVABLE = (mz.OW_ANON, mz.OW_FILE, mz.OW_FILE_DIRTY)


def pageblock_map(m) -> dict[str, np.ndarray]:
    """{'mt': int8[nr_pageblocks], 'zone': int8[...], and one int16 page count per USE_KINDS}."""
    S, C = m.S, m.C
    n = m.n_pages
    npb = n >> mz.PAGEBLOCK_ORDER
    pinfo = mz.node_field(S, mz.F_PINFO, n)
    owner = mz.node_field(S, mz.F_OWNER, n)
    pb = S[int(C[mz.H_PB]):int(C[mz.H_PB]) + npb]
    state = (pinfo >> mz.PI_STATE_SHIFT) & 3
    order = pinfo & mz.PI_ORDER_MASK
    heads = np.nonzero(state != mz.PG_TAIL)[0]
    st, od, ow = state[heads], order[heads], owner[heads]
    kind = ow & mz.OW_KIND_MASK
    pinned = ((ow >> mz.OW_PIN_SHIFT) & mz.OW_PIN_MASK) > 0
    use = np.full(len(heads), USE_KINDS.index("kernel"), dtype=np.int8)
    use[(st == mz.PG_BUDDY) | (st == mz.PG_PCP)] = USE_KINDS.index("free")
    alloc = st == mz.PG_ALLOC
    movable = alloc & np.isin(kind, _MOVABLE)
    use[movable] = USE_KINDS.index("movable")
    use[movable & pinned] = USE_KINDS.index("pinned")
    use[alloc & (kind == mz.OW_DEVICE)] = USE_KINDS.index("device")
    counts = np.zeros((len(USE_KINDS), npb), dtype=np.int64)
    small = od <= mz.PAGEBLOCK_ORDER
    np.add.at(counts, (use[small], heads[small] >> mz.PAGEBLOCK_ORDER), 1 << od[small].astype(np.int64))
    for h, o, u in zip(heads[~small].tolist(), od[~small].tolist(), use[~small].tolist()):
        first = h >> mz.PAGEBLOCK_ORDER
        counts[u, first:first + (1 << (o - mz.PAGEBLOCK_ORDER))] += mz.PAGEBLOCK_NR_PAGES
    mt = np.where(pb & mz.PB_ISOLATE, mz.MIGRATE_ISOLATE, pb & mz.PB_MT_MASK).astype(np.int8)
    zone = np.zeros(npb, dtype=np.int8)
    for z in range(m.nr_zones):
        zone[m.zone_field(z, mz.Z_START) >> mz.PAGEBLOCK_ORDER:m.zone_field(z, mz.Z_END) >> mz.PAGEBLOCK_ORDER] = z
    out = {"mt": mt, "zone": zone}
    out.update({k: counts[i].astype(np.int16) for i, k in enumerate(USE_KINDS)})
    return out
