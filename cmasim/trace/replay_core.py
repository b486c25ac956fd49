"""The replay's per-record passes, compiled: prescan and the translation into engine events.

`cmasim.trace.replay` used to walk every trace record in Python three times (prescan, per-CPU
list inference, translation into core events); at ~1 µs a record those loops were most of a
replay's time after parsing (docs/performance.md, "Replay"). The passes here do the same
(prescan and translation below; the per-CPU list inference's loops at the end of the file),
record for record, over a chunk's int64 record array (`cmasim.trace.parser` columns), with the
Python dicts replaced by arrays:

* `kmap` (kernel head pfn -> handle, the block's order kept per handle) and the per-CPU list
  inference's tables are open-addressing hash tables (linear probing, backward-shift deletion)
  with each value next to its key in one int64 array (`kv_*`: key or EMPTY, value, key, ...; a
  probe reads one cache line); prescan's set of live pfns is one too (values unused). The caller
  keeps kmap and the live set at most half full: before
  each chunk it grows the table (`kv_grow`) so that the chunk's records, each adding
  at most one key, fit; the inference's tables grow themselves (`kv_doubled`).
* The handle allocator of `replay._Handles` (ids freed in a batch are reused only in later
  batches, last freed first) is a free stack and a pending list.
* Counters and the anomaly counts with their first line numbers are int64 arrays (`CTL_*`,
  `AN_*`), turned back into the report's dicts by the caller.

`translate_chunk` stops where Python must act: at a flush point (BATCH events reached where the
Python loop checked for it) and at a free of MAX_ORDER of a page the trace never allocated
(memory onlining: the caller flushes and recomputes the watermarks; 32 in pybuild). The other
frees of pages the trace never allocated (pre-trace pages, ~500 per trace) are replayed here
(`pretrace_take`, the search and claim `SnapState.take_pretrace` also uses). The caller then
resumes at the next record. The events, handles and report are those the Python loop produced.

The same goes for the snapshot machine's per-block loops (`cmasim.trace.snapshot`): the free
blocks and per-CPU pages of `build_machine`, and the search for pre-trace pages.

Compiled with `kjit` (cached) and listed in `mm.jit._CORE_FILES`, as every compiled file is;
`cmasim compile` (warmup.compile_core's tiny replay) compiles it with the core.
"""

from __future__ import annotations

import numpy as np

from cmasim.mm.folio import default_owner
from cmasim.mm.freelist import __add_to_free_list, account_freepages, list_add_tail, set_pinfo
from cmasim.mm.jit import kjit, kjit_inline
from cmasim.mm.mmzone import (H_HANDLE, H_LIVE, H_LIVE_PAGES, H_PB, H_ZONE, MIGRATE_MOVABLE,
                              MIGRATE_PCPTYPES, PB_MT_MASK, PG_ALLOC, PI_ORDER_MASK, Z_END, Z_START, ZS,
                              NODE_W, F_OWNER, F_PINFO)

EMPTY = -1

# Record columns and kinds (cmasim.trace.parser; repeated here as plain ints so that this module
# compiles without importing the parser).
_C_KIND, _C_TIME, _C_CPU, _C_PID, _C_PFN, _C_F0, _C_LINE = 0, 1, 2, 3, 4, 5, 13
_K_PAGE_ALLOC, _K_PAGE_FREE, _K_ZONE_LOCKED, _K_PCPU_DRAIN, _K_EXTFRAG, _K_FREE_BATCHED = 1, 2, 3, 4, 5, 6

# kernel-event counters of prescan_chunk (replay.KernelCounts' fields, in this order)
KC_NAMES = ("allocs", "allocs_failed", "frees", "frees_batched", "refill_blocks", "buddy_blocks", "pcpu_drain",
            "extfrag", "extfrag_change_ownership", "alloc_pages", "free_pages")
(KC_ALLOCS, KC_ALLOCS_FAILED, KC_FREES, KC_FREES_BATCHED, KC_REFILL, KC_BUDDY, KC_DRAIN, KC_EXTFRAG,
 KC_EXTFRAG_OWN, KC_ALLOC_PAGES, KC_FREE_PAGES) = range(11)
_OP_ALLOC, _OP_FREE = 1, 2  # cmasim.engine_core

# ctl words of translate_chunk
CTL_NEXT = 0  # next never-used handle id
CTL_FREE_N = 1  # handles on the free stack
CTL_PEND_N = 2  # handles released in this batch
CTL_NROWS = 3  # events in the buffer
CTL_HT_N = 4  # keys in kmap
CTL_ALLOCS = 5
CTL_FREES = 6
CTL_PRE_FREES = 7  # frees of pre-trace pages (replay's report: pretrace_frees)
CTL_PRE_PAGES = 8  # their pages (pretrace_free_pages)
CTL_SIZE = 10

# anomaly kinds (Anomalies keys), in this order
AN_NAMES = ("alloc_failed_in_kernel", "cpu_outside_snapshot", "pfn_outside_zones", "alloc_of_live_pfn",
            "free_order_mismatch", "partial_free_of_live_block", "pretrace_free_no_snapshot", "memory_onlined",
            "pretrace_pool_empty", "pretrace_free")
AN_ALLOC_FAILED, AN_CPU_OUTSIDE, AN_PFN_OUTSIDE, AN_ALLOC_LIVE, AN_ORDER_MISMATCH, AN_PARTIAL, AN_NO_SNAPSHOT, \
    AN_ONLINED, AN_POOL_EMPTY, AN_PRETRACE = range(len(AN_NAMES))
AN_EXAMPLES = 5

# translate_chunk's status
ST_DONE = 0  # every record of the chunk processed
ST_FLUSH = 1  # the buffer reached `batch` events: run them, then resume at the returned index
ST_SPECIAL = 2  # a free Python handles (memory onlining; any pre-trace free without `pre_on`), at the index
ST_NO_HANDLES = 3  # more live allocations than handles


@kjit_inline
def _home(key, mask):
    return ((key & 0x7FFFFFFF) * 2654435761 >> 12) & mask


@kjit_inline
def _stays(home, i, j):
    """Backward-shift deletion: the key at j (home slot `home`) stays put when its home lies
    cyclically in (i, j], i the slot being emptied; otherwise it moves back to i."""
    if i <= j:
        return i < home <= j
    return home > i or home <= j


def kv_grow(t: np.ndarray, count: int, more: int) -> np.ndarray:
    """`t`, or a larger copy, so that `count + more` keys keep the key-value table at most half full."""
    if 2 * (count + more) <= t.shape[0] >> 1:
        return t
    nt = kv_new(2 * (count + more))
    kv_rehash(t, nt)
    return nt


# Key-value tables with the value next to its key (t[2*i] = key or EMPTY, t[2*i + 1] = value):
# open addressing (home slot `_home`, linear probing, backward-shift deletion `_stays`), for kmap,
# prescan's live set and pcp_flows' tables (pageblock types, allocated-as migratetypes, on-list
# entries). A probe reads one cache line, key and value together.


@kjit
def kv_find(t, key):
    """Slot of `key` in the key-value table t, or -1 (its value is t[2 * slot + 1])."""
    if key < 0:
        return -1
    mask = (t.shape[0] >> 1) - 1
    i = _home(key, mask)
    while True:
        k = t[2 * i]
        if k == key:
            return i
        if k == EMPTY:
            return -1
        i = (i + 1) & mask


@kjit
def kv_insert(t, key, v):
    """Set key -> v; returns 1 if the key is new, else 0."""
    mask = (t.shape[0] >> 1) - 1
    i = _home(key, mask)
    while True:
        k = t[2 * i]
        if k == key:
            t[2 * i + 1] = v
            return 0
        if k == EMPTY:
            t[2 * i] = key
            t[2 * i + 1] = v
            return 1
        i = (i + 1) & mask


@kjit
def kv_delete(t, slot):
    """Remove the key at `slot` (backward-shift deletion keeps every probe chain unbroken)."""
    mask = (t.shape[0] >> 1) - 1
    i = slot
    j = slot
    while True:
        j = (j + 1) & mask
        k = t[2 * j]
        if k == EMPTY:
            break
        if _stays(_home(k, mask), i, j):
            continue
        t[2 * i] = k
        t[2 * i + 1] = t[2 * j + 1]
        i = j
    t[2 * i] = EMPTY


@kjit
def kv_fill(t, keys, vals):
    """Insert keys[j] -> vals[j] into t, in order."""
    for j in range(keys.shape[0]):
        kv_insert(t, keys[j], vals[j])


@kjit
def kv_rehash(t, nt):
    """Insert every key of the key-value table t, with its value, into the empty larger nt."""
    for i in range(t.shape[0] >> 1):
        if t[2 * i] != EMPTY:
            kv_insert(nt, t[2 * i], t[2 * i + 1])


@kjit
def kv_doubled(t):
    """The key-value table t rehashed into one twice its size: pcp_flows' tables start small and
    grow with the pages they hold (pages on a per-CPU list, pages allocated and not yet freed),
    so that their random probes stay in the CPU's caches."""
    nt = np.full(2 * t.shape[0], EMPTY, dtype=np.int64)
    kv_rehash(t, nt)
    return nt


def kv_new(cap: int) -> np.ndarray:
    """An empty key-value table of at least `cap` slots (a power of two, at least 1,024)."""
    cap = max(1024, 1 << (int(cap) - 1).bit_length())
    return np.full(2 * cap, EMPTY, dtype=np.int64)



@kjit
def in_sorted(values, keys, out):
    """out[i] = values[i] is one of `keys` (sorted ascending): np.isin's answer, by binary search."""
    for i in range(values.shape[0]):
        v = values[i]
        lo = 0
        hi = keys.shape[0]
        while lo < hi:
            mid = (lo + hi) >> 1
            if keys[mid] < v:
                lo = mid + 1
            else:
                hi = mid
        out[i] = lo < keys.shape[0] and keys[lo] == v


@kjit
def zones_of_pfns(pfns, lo, hi, out):
    """out[i] = the first j with lo[j] <= pfns[i] < hi[j] (Snapshot.zones_of_kernel_pfns), else -1."""
    for i in range(pfns.shape[0]):
        p = pfns[i]
        z = -1
        for j in range(lo.shape[0]):
            if lo[j] <= p < hi[j]:
                z = j
                break
        out[i] = z


@kjit
def prescan_chunk(a, zones, has_snap, last_kind, last_pid, bg, live, headroom, counts, max_order, kc):
    """prescan's record loop for one chunk.

    kc: the kernel's own events, counted (KC_*: replay.KernelCounts' fields; failed
    allocations have pfn -1; zone_locked's percpu_refill is field 2, extfrag's
    change_ownership field 6).

    bg[i] = 1 where record i is a per-CPU drain that no free on that CPU set off (the previous
    event of that CPU is neither a drain nor a free by the same pid); last_kind/last_pid carry
    each CPU's previous event between chunks (kind -1: none yet; size > the chunk's max CPU).
    The live-pfn set (`live`, a key-value table) gives headroom[z] += 2^order for each
    MAX_ORDER free of a pfn not live, and counts[0] += 1 for each allocation outside every zone
    (has_snap), counts[1] = its keys."""
    n = a.shape[0]
    for i in range(n):
        kind = a[i, _C_KIND]
        cpu = a[i, _C_CPU]
        pid = a[i, _C_PID]
        pk = last_kind[cpu]
        if kind == _K_PCPU_DRAIN and pk != -1 and pk != _K_PCPU_DRAIN and not (
                (pk == _K_PAGE_FREE or pk == _K_FREE_BATCHED) and last_pid[cpu] == pid):
            bg[i] = 1
        last_kind[cpu] = kind
        last_pid[cpu] = pid
        pfn = a[i, _C_PFN]
        if kind == _K_PAGE_ALLOC:
            if pfn >= 0:
                kc[KC_ALLOCS] += 1
                kc[KC_ALLOC_PAGES] += 1 << a[i, _C_F0]
            else:
                kc[KC_ALLOCS_FAILED] += 1
        elif kind == _K_PAGE_FREE:
            kc[KC_FREES] += 1
            kc[KC_FREE_PAGES] += 1 << a[i, _C_F0]
        elif kind == _K_FREE_BATCHED:
            kc[KC_FREES_BATCHED] += 1
        elif kind == _K_ZONE_LOCKED:
            r = a[i, _C_F0 + 2]
            if r == 1:
                kc[KC_REFILL] += 1
            elif r == 0:
                kc[KC_BUDDY] += 1
        elif kind == _K_PCPU_DRAIN:
            kc[KC_DRAIN] += 1
        elif kind == _K_EXTFRAG:
            kc[KC_EXTFRAG] += 1
            if a[i, _C_F0 + 6] == 1:
                kc[KC_EXTFRAG_OWN] += 1
        if kind == _K_PAGE_ALLOC:
            if pfn >= 0:
                counts[1] += kv_insert(live, pfn, 0)
                if has_snap and zones[i] < 0:
                    counts[0] += 1
        elif kind == _K_PAGE_FREE:
            s = kv_find(live, pfn)
            if s >= 0:
                kv_delete(live, s)
                counts[1] -= 1
            elif a[i, _C_F0] == max_order and has_snap:
                if zones[i] >= 0:
                    headroom[zones[i]] += 1 << max_order


@kjit_inline
def _anomaly(an_count, an_lines, kind, line):
    c = an_count[kind]
    if c < AN_EXAMPLES:
        an_lines[kind, c] = line
    an_count[kind] = c + 1


@kjit_inline
def _row(ev, ctl, t, op, cpu, order, gfp, h):
    r = ctl[CTL_NROWS]
    ev[r, 0] = t
    ev[r, 1] = op
    ev[r, 2] = cpu
    ev[r, 3] = order
    ev[r, 4] = gfp
    ev[r, 5] = h
    ctl[CTL_NROWS] = r + 1


@kjit_inline
def _release(pending, ctl, h):
    pending[ctl[CTL_PEND_N]] = h
    ctl[CTL_PEND_N] += 1


@kjit
def handle_get(free, ctl, cap):
    """A handle id (the last one freed in an earlier batch first), or -1 when `cap` are live."""
    n = ctl[CTL_FREE_N]
    if n > 0:
        ctl[CTL_FREE_N] = n - 1
        return free[n - 1]
    h = ctl[CTL_NEXT]
    if h >= cap:
        return -1
    ctl[CTL_NEXT] = h + 1
    return h


@kjit
def end_batch(free, pending, ctl):
    """Handles released in this batch become reusable."""
    n = ctl[CTL_FREE_N]
    for j in range(ctl[CTL_PEND_N]):
        free[n + j] = pending[j]
    ctl[CTL_FREE_N] = n + ctl[CTL_PEND_N]
    ctl[CTL_PEND_N] = 0


@kjit
def translate_chunk(a, zones, i0, ncpu, has_snap, has_state, t_base, batch, max_order, kmap, horder,
                    free, pending, cap, ev, ctl, an_count, an_lines, pre_on, S, C, pretrace, left, cursor,
                    kpb_type, kpb_map):
    """Translate records a[i0:] into engine events ev[ctl[CTL_NROWS]:] (time, op, cpu, order,
    gfp, handle), as replay()'s Python loop did; returns (index, status) (module docstring).

    kmap: kernel head pfn -> handle, a key-value table (kv_*), with the block's order in
    horder[handle]. The caller keeps room in `ev` for two events per record and `kmap` at most
    half full.

    With `pre_on`, a free of a pre-trace page of order below max_order is replayed here, as
    replay()'s pretrace_free() does it (no return to Python per free): the aligned run of
    pre-trace pages at the hint of its kernel pageblock or else found by the search
    (`pretrace_take`, on the snapshot machine S, C and SnapState's `pretrace`, `left`, `cursor`),
    the owner a plain allocation of its pageblock's type gets, a handle attached to it and the
    free event (the kernel's free_pages() of a page allocated before the trace started).
    kpb_type[kpb]: the kernel pageblock's type (MOVABLE where unknown); kpb_map[kpb]: the
    simulated pageblock its first pre-trace free went to (-1: none yet), both dense over the
    snapshot's kernel pageblocks."""
    n = a.shape[0]
    i = i0
    while i < n:
        kind = a[i, _C_KIND]
        line = a[i, _C_LINE]
        if kind == _K_PAGE_ALLOC:
            pfn = a[i, _C_PFN]
            if pfn < 0:
                _anomaly(an_count, an_lines, AN_ALLOC_FAILED, line)
                i += 1
                continue
            cpu = a[i, _C_CPU]
            if cpu >= ncpu:
                _anomaly(an_count, an_lines, AN_CPU_OUTSIDE, line)
                cpu %= ncpu
            if has_snap and zones[i] < 0:
                _anomaly(an_count, an_lines, AN_PFN_OUTSIDE, line)
            t = max(0, a[i, _C_TIME] - t_base)
            order = a[i, _C_F0]
            s = kv_find(kmap, pfn)
            if s >= 0:
                _anomaly(an_count, an_lines, AN_ALLOC_LIVE, line)
                _row(ev, ctl, t, _OP_FREE, cpu, 0, 0, kmap[2 * s + 1])
                _release(pending, ctl, kmap[2 * s + 1])
            h = handle_get(free, ctl, cap)
            if h < 0:
                return i, ST_NO_HANDLES
            ctl[CTL_HT_N] += kv_insert(kmap, pfn, h)
            horder[h] = order
            _row(ev, ctl, t, _OP_ALLOC, cpu, order, a[i, _C_F0 + 2], h)
            ctl[CTL_ALLOCS] += 1
        elif kind == _K_PAGE_FREE:
            pfn = a[i, _C_PFN]
            order = a[i, _C_F0]
            cpu = a[i, _C_CPU] % ncpu
            s = kv_find(kmap, pfn)
            if s >= 0:
                h = kmap[2 * s + 1]
                if horder[h] != order:
                    _anomaly(an_count, an_lines, AN_ORDER_MISMATCH, line)
                kv_delete(kmap, s)
                ctl[CTL_HT_N] -= 1
                _row(ev, ctl, max(0, a[i, _C_TIME] - t_base), _OP_FREE, cpu, 0, 0, h)
                _release(pending, ctl, h)
                ctl[CTL_FREES] += 1
                i += 1
                continue
            inside = False
            for o in range(1, max_order + 1):
                s = kv_find(kmap, pfn & ~((1 << o) - 1))
                if s >= 0 and horder[kmap[2 * s + 1]] >= o:
                    inside = True
                    break
            if inside:
                _anomaly(an_count, an_lines, AN_PARTIAL, line)
                i += 1
                continue
            if not has_state:
                _anomaly(an_count, an_lines, AN_NO_SNAPSHOT, line)
                i += 1
                continue
            if zones[i] < 0:
                _anomaly(an_count, an_lines, AN_PFN_OUTSIDE, line)
                i += 1
                continue
            if not pre_on or order < 0 or order >= max_order:
                return i, ST_SPECIAL
            kpb = pfn >> 9
            spb = kpb_map[kpb]
            hint = spb * 512 + (pfn & 511) if spb >= 0 else -1
            p = pretrace_take(pretrace, left, S, C, zones[i], order, kpb_type[kpb], hint, cursor)
            if p < 0:
                _anomaly(an_count, an_lines, AN_POOL_EMPTY, line)
                i += 1
                continue
            if spb < 0:
                kpb_map[kpb] = p >> 9
            ctl[CTL_PRE_FREES] += 1
            ctl[CTL_PRE_PAGES] += 1 << order
            _anomaly(an_count, an_lines, AN_PRETRACE, line)
            pmt = S[C[H_PB] + (p >> 9)] & PB_MT_MASK
            S[NODE_W * p + F_OWNER] = default_owner(pmt if pmt < MIGRATE_PCPTYPES else MIGRATE_MOVABLE)
            h = handle_get(free, ctl, cap)
            if h < 0:
                return i, ST_NO_HANDLES
            S[C[H_LIVE] + h] = p  # replay._Engine.attach
            S[C[H_HANDLE] + p] = h
            C[H_LIVE_PAGES] += 1 << (S[NODE_W * p + F_PINFO] & PI_ORDER_MASK)
            _row(ev, ctl, max(0, a[i, _C_TIME] - t_base), _OP_FREE, cpu, 0, 0, h)
            _release(pending, ctl, h)
            ctl[CTL_FREES] += 1
        i += 1
        if ctl[CTL_NROWS] >= batch:
            return i, ST_FLUSH
    return i, ST_DONE


# --- the snapshot machine (cmasim.trace.snapshot) -------------------------------------------------------


@kjit
def pretrace_search(pretrace, left, S, pb_off, mt_mask, start, end, n, mt, cursor):
    """SnapState._search's scan: the lowest aligned n-page run of [start, end) at or above
    `cursor` that is all `pretrace` and, with mt >= 0, in a pageblock of type mt (else -1);
    and the new cursor: the offset of the first all-pretrace run (whatever its type), or the
    end of the range when there is none.

    `left[pb]`: how many pages of pageblock pb are `pretrace` (empty: not known). A run that
    starts in a pageblock with fewer than min(n, pageblock) such pages cannot be all `pretrace`,
    nor can any other run starting there: the scan goes on at the next pageblock, in one step
    instead of one per run (an order-0 search crossed every taken page of its pageblocks)."""
    k_total = (end - start) // n
    i = cursor // n
    first = -1
    need = min(n, 512)
    while i < k_total:
        base = start + i * n
        if left.shape[0] > 0 and left[base >> 9] < need:
            i = ((((base >> 9) + 1) << 9) - start + n - 1) // n
            continue
        if first >= 0 and mt >= 0 and (S[pb_off + (base >> 9)] & mt_mask) != mt:
            # the cursor is known: only runs in pageblocks of type mt matter now, and every run
            # that starts in this pageblock fails the same test: go on at the first run that
            # starts in the next pageblock
            i = ((((base >> 9) + 1) << 9) - start + n - 1) // n
            continue
        full = True
        for q in range(base, base + n):
            if not pretrace[q]:
                full = False
                break
        if full:
            if first < 0:
                first = i * n
            if mt < 0 or (S[pb_off + (base >> 9)] & mt_mask) == mt:
                return base, first
        i += 1
    if first < 0:
        first = k_total * n if cursor // n < k_total else cursor
    return -1, first


@kjit
def pretrace_claim(pretrace, left, S, C, p, order):
    """SnapState.claim_block: the order-0 allocated pages [p, p + 2^order) become one allocated
    block of `order` (split_page() in reverse) in a pageblock of its type (MOVABLE for types
    above the per-CPU ones), no longer pre-trace; `left` (if counted) follows."""
    n = 1 << order
    for q in range(p, p + n):
        pretrace[q] = False
    pb = p >> 9
    if left.shape[0] > 0:  # a block within one pageblock, or whole pageblocks
        if n < 512:
            left[pb] -= n
        else:
            for b in range(pb, pb + (n >> 9)):
                left[b] -= 512
    mt = S[C[H_PB] + pb] & PB_MT_MASK
    for q in range(p, p + n):
        S[NODE_W * q + F_PINFO] = 0
    set_pinfo(S, C, p, order, PG_ALLOC, mt if mt < MIGRATE_PCPTYPES else MIGRATE_MOVABLE, 0)


@kjit
def pretrace_take(pretrace, left, S, C, z, order, mt, hint, cursor):
    """SnapState.take_pretrace: a block of 2^order pages, all still allocated before the trace,
    aligned, in zone z, at `hint` if that run is all pre-trace, else the first in a pageblock of
    type mt, else the first of any type (pretrace_search, from the cursor cursor[z, order]);
    claimed (pretrace_claim) and returned, or -1 if none is left."""
    n = 1 << order
    zb = C[H_ZONE] + z * ZS
    start = C[zb + Z_START]
    end = C[zb + Z_END]
    p = -1
    if hint >= 0 and start <= hint and hint + n <= end and hint % n == 0:
        p = hint
        for q in range(hint, hint + n):
            if not pretrace[q]:
                p = -1
                break
    if p < 0:
        p, cursor[z, order] = pretrace_search(pretrace, left, S, C[H_PB], PB_MT_MASK, start, end, n, mt,
                                              cursor[z, order])
        if p < 0:
            p, cursor[z, order] = pretrace_search(pretrace, left, S, C[H_PB], PB_MT_MASK, start, end, n, -1,
                                                  cursor[z, order])
        if p < 0:
            return -1
    pretrace_claim(pretrace, left, S, C, p, order)
    return p


@kjit
def add_free_blocks(S, C, zslot, zb, pfns, orders, mts, zone_pre, start):
    """build_machine's free blocks, in the given order: pages cleared, the head linked at the
    tail of its free list and accounted, the pages no longer allocated "before the trace"."""
    for j in range(pfns.shape[0]):
        p = pfns[j]
        o = orders[j]
        for q in range(p, p + (1 << o)):
            S[NODE_W * q + F_PINFO] = 0
            zone_pre[q - start] = False
        __add_to_free_list(S, C, zslot, p, o, mts[j], 1)
        account_freepages(C, zb, 1 << o, mts[j])


@kjit
def add_pcp_blocks(S, C, lst, heads, order, state, mt, zone_pre, start):
    """build_machine's per-CPU pages: blocks at zone offsets `heads`, in order, onto list `lst`."""
    n = 1 << order
    for j in range(heads.shape[0]):
        h = heads[j]
        p = h + start
        for q in range(n):
            S[NODE_W * (p + q) + F_PINFO] = 0
        list_add_tail(S, C, lst, p)
        set_pinfo(S, C, p, order, state, mt, lst)
        for q in range(n):
            zone_pre[h + q] = False


@kjit
def place_small_blocks(nblocks_free, n_pageblocks, pb_pages, out):
    """snapshot.place_small's greedy placement into out[k] = (pageblock, offset, order); returns
    the number placed, or -1 when they do not fit `n_pageblocks` (see place_small)."""
    used = np.zeros(pb_pages, dtype=np.bool_)
    heads = np.full(pb_pages, -1, dtype=np.int64)  # offset -> order of the free block there
    cursor = np.zeros(nblocks_free.shape[0], dtype=np.int64)
    nused = 0
    pb = 0
    k = 0
    for order in range(nblocks_free.shape[0] - 1, -1, -1):
        size = 1 << order
        for _ in range(nblocks_free[order]):
            while True:
                pos = cursor[order]
                placed = False
                while pos + size <= pb_pages:
                    # free, no free buddy of the same order, and one page of the pageblock kept
                    # allocated (a wholly free pageblock would be an order-9 block)
                    if heads[pos ^ size] != order and nused + size < pb_pages:
                        clear = True
                        for q in range(pos, pos + size):
                            if used[q]:
                                clear = False
                                break
                        if clear:
                            placed = True
                            break
                    pos += size
                if placed:
                    used[pos:pos + size] = True
                    nused += size
                    heads[pos] = order
                    cursor[order] = pos + size
                    out[k, 0] = pb
                    out[k, 1] = pos
                    out[k, 2] = order
                    k += 1
                    break
                pb += 1
                if pb >= n_pageblocks:
                    return -1
                used[:] = False
                heads[:] = -1
                cursor[:] = 0
                nused = 0
    return k


# infer_pcp_lists (cmasim.trace.replay): the learning of pageblock types from per-CPU round
# trips, each record's next event on its CPU, and the per-list flows. The record array `ev`
# has infer_pcp_lists' columns (kind, cpu, pfn, f0, f1, f2, f3, zone, line).
_K_ZONE_LOCKED, _K_EXTFRAG = 3, 5
_MIGRATE_MOVABLE, _MIGRATE_PCPTYPES, _MIGRATE_ISOLATE, _MIGRATE_TYPES = 1, 3, 5, 6


@kjit
def learn_round_trips(ev, out_pb, out_mt):
    """learn_pageblock_types()' record loop: out_pb/out_mt[:n] receive (pageblock, allocation
    migratetype) of every per-CPU round trip (a free, then an mm_page_alloc of the same pfn and
    order with no zone_locked, drain or extfrag of it in between), in trace order; the caller
    keeps the first per pageblock. The pending frees (pfn -> order) are a key-value table (kv_*)
    that starts small and doubles at half full, as pcp_flows' tables. Returns n."""
    pending = np.full(2048, EMPTY, dtype=np.int64)
    npend = 0
    n = 0
    for i in range(ev.shape[0]):
        kind = ev[i, 0]
        pfn = ev[i, 2]
        if pfn < 0:
            continue
        if kind == _K_PAGE_FREE:
            if 2 * (npend + 1) > (pending.shape[0] >> 1):
                pending = kv_doubled(pending)
            npend += kv_insert(pending, pfn, ev[i, 3])
        elif kind == _K_PAGE_ALLOC or kind == _K_ZONE_LOCKED or kind == _K_PCPU_DRAIN or kind == _K_EXTFRAG:
            s = kv_find(pending, pfn)
            if s >= 0:
                fo = pending[2 * s + 1]
                kv_delete(pending, s)
                npend -= 1
                mt = ev[i, 4]
                if kind == _K_PAGE_ALLOC and ev[i, 3] == fo and 0 <= mt < _MIGRATE_PCPTYPES:
                    out_pb[n] = pfn >> 9
                    out_mt[n] = mt
                    n += 1
    return n


@kjit
def infer_rows(a, zones, out, r):
    """infer_pcp_lists()' rows of chunk `a` (records, cmasim.trace.parser's columns) into
    out[r:r + len(a)]: (kind, cpu, pfn, f0, f1, f2, f3, zone, line), one pass, row by row."""
    for i in range(a.shape[0]):
        j = r + i
        out[j, 0] = a[i, _C_KIND]
        out[j, 1] = a[i, _C_CPU]
        out[j, 2] = a[i, _C_PFN]
        out[j, 3] = a[i, _C_F0]
        out[j, 4] = a[i, _C_F0 + 1]
        out[j, 5] = a[i, _C_F0 + 2]
        out[j, 6] = a[i, _C_F0 + 3]
        out[j, 7] = zones[i]
        out[j, 8] = a[i, _C_LINE]


@kjit
def first_types(a, out_pb, out_mt):
    """prescan's pageblock types for one chunk: out_pb/out_mt[:m] receive (kernel pageblock,
    migratetype) of the chunk's drain and zone_locked records (free_pcppages_bulk() and
    rmqueue_bulk() name the pageblock's list), the first record of each pageblock, in trace
    order (a negative pageblock every time: the caller's dict keeps the first). Returns m."""
    nsel = 0
    for i in range(a.shape[0]):
        if a[i, _C_KIND] == _K_PCPU_DRAIN or a[i, _C_KIND] == _K_ZONE_LOCKED:
            nsel += 1
    cap = 1024
    while cap < 2 * nsel:
        cap *= 2
    seen = np.full(2 * cap, EMPTY, dtype=np.int64)
    m = 0
    for i in range(a.shape[0]):
        kind = a[i, _C_KIND]
        if kind == _K_PCPU_DRAIN or kind == _K_ZONE_LOCKED:
            kpb = a[i, _C_PFN] >> 9
            if kpb >= 0:
                if kv_find(seen, kpb) >= 0:
                    continue
                kv_insert(seen, kpb, 0)
            out_pb[m] = kpb
            out_mt[m] = a[i, _C_F0 + 1]
            m += 1
    return m


@kjit
def next_on_cpu(ev, ncpu, nxt_kind, nxt_pfn):
    """nxt_kind/nxt_pfn[i]: kind and pfn of the next record of record i's CPU (else left -1)."""
    seen = np.full(ncpu, -1, dtype=np.int64)
    for i in range(ev.shape[0] - 1, -1, -1):
        c = ev[i, 1]
        j = seen[c]
        if j >= 0:
            nxt_kind[i] = ev[j, 0]
            nxt_pfn[i] = ev[j, 2]
        seen[c] = i


# pcp_flows' per-CPU list entries: one row per page put on a list (its columns)
E_KEY, E_ORDER, E_MT, E_CPU, E_PFN, E_NEXT = range(6)
E_COLS = 6


@kjit_inline
def _flow(net, low, low_seq, seq, key, d):
    v = net[key] + d
    net[key] = v
    if -v > low[key]:
        low[key] = -v
        if low_seq[key] < 0:
            low_seq[key] = seq[0]
            seq[0] += 1


@kjit_inline
def _leave(ol, cnt, ent, pfn):
    s = kv_find(ol, pfn)
    if s >= 0:
        cnt[ent[ol[2 * s + 1], E_KEY]] -= 1
        kv_delete(ol, s)
        return 1
    return 0


@kjit_inline
def _take(ol, s, cnt, ent, net, low, low_seq, seq, ut, nut, line):
    """alloc_pages_bulk() takes the on-list page at slot s of the on-list table, just before `line`."""
    e = ol[2 * s + 1]
    q = ol[2 * s]
    kv_delete(ol, s)
    k = ent[e, E_KEY]
    cnt[k] -= 1
    _flow(net, low, low_seq, seq, k, -(1 << ent[e, E_ORDER]))
    ut[nut, 0] = line
    ut[nut, 1] = q
    ut[nut, 2] = ent[e, E_ORDER]
    ut[nut, 3] = ent[e, E_MT]
    ut[nut, 4] = ent[e, E_CPU]
    return nut + 1


@kjit
def pcp_flows(ev, nxt_kind, nxt_pfn, pind, npi, ncpu, kt, am, ol, net, low, low_seq, exact, exact_seq, ut):
    """infer_pcp_lists()' record loop, rule for rule (see its docstring). Lists are dense keys
    (zone * ncpu + cpu) * npi + pindex; net/low/exact per key, with low_seq/exact_seq the order in
    which the Python dicts got the key (-1: never; exact's presence is exact_seq >= 0).
    Key-value tables (kv_*): kt: kernel pageblock -> type (kpb_type, read only); am: pfn ->
    migratetype allocated as; ol: pfn on a per-CPU list -> its entry e (row e of `ent`: the list
    key, order, mt, cpu, pfn and the next entry of the list, E_*); am and ol are given empty (any
    power-of-two size, `kv_new`) and grow here, kept at most half full. A list's members are its
    entries (a chain through ent[e, E_NEXT] from head[key]) whose pfn still maps to them;
    cnt[key] counts those. An entry's fields are one row, so reading it touches one cache line.
    ut[:n] receives the untraced pages (line, pfn, order, mt, cpu) in the order the Python loop
    appended them; returns n."""
    n = ev.shape[0]
    nkeys = net.shape[0]
    cnt = np.zeros(nkeys, dtype=np.int64)
    head = np.full(nkeys, -1, dtype=np.int64)
    ent = np.empty((n + 1, E_COLS), dtype=np.int64)  # rows [0, nent) are written before they are read
    nent = 0
    last_kind = np.full(ncpu, -1, dtype=np.int64)
    last_pfn = np.full(ncpu, -1, dtype=np.int64)
    last_buddy = np.full(ncpu, -1, dtype=np.int64)
    seq = np.zeros(2, dtype=np.int64)  # [0]: low's next insertion; [1]: exact's
    nut = 0
    norders = pind.shape[0]
    buf = np.empty(n + 1, dtype=np.int64)  # written before read
    am_n = 0  # keys in am
    ol_n = 0  # keys in ol
    for i in range(n):
        kind = ev[i, 0]
        cpu = ev[i, 1]
        pfn = ev[i, 2]
        f0 = ev[i, 3]
        f1 = ev[i, 4]
        f2 = ev[i, 5]
        z = ev[i, 7]
        line = ev[i, 8]
        prev = last_kind[cpu]
        prev_pfn = last_pfn[cpu]
        last_kind[cpu] = kind
        last_pfn[cpu] = pfn
        if pfn < 0 or not (kind == _K_PAGE_ALLOC or kind == _K_PAGE_FREE or kind == _K_ZONE_LOCKED
                           or kind == _K_PCPU_DRAIN or kind == _K_EXTFRAG):
            continue
        if kind == _K_EXTFRAG:
            if prev == _K_ZONE_LOCKED and prev_pfn == pfn:
                continue  # try_to_claim_block() then __rmqueue_smallest(): zone_locked counted it
            f1 = ev[i, 6]  # alloc_migratetype; a refill if per-CPU eligible
            f2 = 1
        order = f0
        if z < 0 or order < 0 or order >= norders:
            continue
        if kind == _K_PAGE_FREE:
            # the pageblock's type if known (kpb_type), else the type the page was allocated
            # as (popped either way), else MOVABLE
            s = kv_find(am, pfn)
            mt = _MIGRATE_MOVABLE
            if s >= 0:
                mt = am[2 * s + 1]
                kv_delete(am, s)
                am_n -= 1
            s = kv_find(kt, pfn >> 9)
            if s >= 0:
                mt = kt[2 * s + 1]
        else:
            mt = f1
            if kind == _K_PAGE_ALLOC:
                if 2 * (am_n + 1) > (am.shape[0] >> 1):
                    am = kv_doubled(am)
                am_n += kv_insert(am, pfn, mt)
        if mt < 0 or mt >= _MIGRATE_TYPES or mt == _MIGRATE_ISOLATE:
            continue
        if mt >= _MIGRATE_PCPTYPES:
            mt = _MIGRATE_MOVABLE
        pi = pind[order, mt]
        if pi < 0:
            continue
        key = (z * ncpu + cpu) * npi + pi
        sz = 1 << order
        if kind == _K_ZONE_LOCKED or kind == _K_EXTFRAG:
            if f2 == 1:
                if not (prev == _K_ZONE_LOCKED or prev == _K_EXTFRAG):
                    one_block = nxt_kind[i] == _K_PAGE_ALLOC and nxt_pfn[i] == pfn
                    if cnt[key] > 0 and not one_block:
                        # the list was empty: alloc_pages_bulk() took every member, in pfn order
                        m = 0
                        e = head[key]
                        while e >= 0:
                            s = kv_find(ol, ent[e, E_PFN])
                            if s >= 0 and ol[2 * s + 1] == e:
                                buf[m] = ent[e, E_PFN]
                                m += 1
                            e = ent[e, E_NEXT]
                        head[key] = -1
                        qs = np.sort(buf[:m])
                        for j in range(m):
                            s = kv_find(ol, qs[j])
                            nut = _take(ol, s, cnt, ent, net, low, low_seq, seq, ut, nut, line)
                            ol_n -= 1
                    if exact_seq[key] < 0 and not one_block:  # rmqueue_buddy() may have served it
                        exact[key] = -net[key]
                        exact_seq[key] = seq[1]
                        seq[1] += 1
                _flow(net, low, low_seq, seq, key, sz)
                ol_n -= _leave(ol, cnt, ent, pfn)
            else:
                last_buddy[cpu] = pfn  # rmqueue_buddy(): its allocation does not leave a list
                continue
        elif kind == _K_PAGE_ALLOC:
            ol_n -= _leave(ol, cnt, ent, pfn)
            lb = last_buddy[cpu]
            last_buddy[cpu] = -1
            if lb == pfn:
                continue
            _flow(net, low, low_seq, seq, key, -sz)
            continue
        elif kind == _K_PAGE_FREE:
            s = kv_find(ol, pfn)
            if s >= 0:  # freed again while on its list: alloc_pages_bulk() took it
                nut = _take(ol, s, cnt, ent, net, low, low_seq, seq, ut, nut, line)
                ol_n -= 1
            _flow(net, low, low_seq, seq, key, sz)
        else:
            ol_n -= _leave(ol, cnt, ent, pfn)
            _flow(net, low, low_seq, seq, key, -sz)
            continue
        # refill or free: the page is on the list `key`
        e = nent
        nent += 1
        ent[e, E_KEY] = key
        ent[e, E_ORDER] = order
        ent[e, E_MT] = mt
        ent[e, E_CPU] = cpu
        ent[e, E_PFN] = pfn
        ent[e, E_NEXT] = head[key]
        head[key] = e
        if 2 * (ol_n + 1) > (ol.shape[0] >> 1):
            ol = kv_doubled(ol)
        ol_n += kv_insert(ol, pfn, e)
        cnt[key] += 1
    return nut
