"""Per-CPU pagesets: refill, allocation, freeing, draining and decay.

Kernel: mm/page_alloc.c — order_to_pindex, nr_pcp_alloc, rmqueue_bulk, __rmqueue_pcplist,
rmqueue_pcplist, free_unref_page_commit (v6.14+ free_frozen_page_commit), nr_pcp_high,
nr_pcp_free, free_pcppages_bulk, drain_pages_zone, drain_all_pages, decay_pcp_high.

Rules per policy version: >= 607 has high auto-tuning (high_min/high_max, free_count,
alloc_factor, ZONE_BELOW_HIGH); >= 616 raises the free_high threshold to
batch + high_min/2. 601 uses a fixed ``high``, free_factor and cached pcp migratetypes.
The list index map (order_to_pindex) is policy data: ``PL_PCP_PINDEX[order][mt]``.

Simplifications: the pcp trylock never fails; page checks (check_new_pages) always pass.
ZONE_RECLAIM_ACTIVE is set by kswapd's balance_pgdat() (vmscan.py).
"""

from cmasim.mm.jit import PREFETCH_HINTS, kjit, kjit_fixed, kjit_inline, prefetch
from cmasim.mm.mmzone import (
    H_NCPU, H_NZONES, H_PCP, H_POL, H_RMQM, H_LAST_MT, H_CPU, H_HANDLE,
    MIGRATE_ISOLATE, PAGE_ALLOC_COSTLY_ORDER, PCP_BATCH_SCALE_MAX,
    PCPF_FREE_HIGH_BATCH, PCPF_PREV_FREE_HIGH_ORDER, PG_PCP, PL_NR_PCP_LISTS, PL_PCP_PINDEX,
    MIGRATE_TYPES, PS,
    P_ALLOC_FACTOR, P_COUNT, P_FLAGS, P_FREE_COUNT, P_FREE_FACTOR, P_HIGH,
    TR_MM_PAGE_PCPU_DRAIN, VM_DRAIN_ALL, VM_PCP_DRAINS, VM_PCP_DRAIN_PAGES, VM_PCP_REFILLS,
    VM_PCP_REFILL_PAGES, VM_ZONE_LOCK, VM_PGFREE, VM_PCP_FREES,
    Z_BATCH, Z_FLAGS, Z_NR_ISOLATE_PB, Z_HIGH_MAX, Z_HIGH_MIN, ZONE_BELOW_HIGH, ZONE_RECLAIM_ACTIVE, ZONE_MOVABLE,
    ALLOC_WMARK_HIGH, ALLOC_CMA, MIGRATE_CMA, MIGRATE_MOVABLE, PL_CMA_ONLY_RMQUEUE,
    NODE_W, F_PREV,
)
from cmasim.mm.freelist import (
    get_pfnblock_migratetype, list_add_head, list_add_tail, list_del, list_empty, list_first,
    list_last, pcp_list_id, pi_aux, pi_order, pinfo, policy_version, set_pinfo, trace_emit,
    vm_add, zone_base,
)
from cmasim.mm.page_alloc import RMQUEUE_NORMAL, __free_one_page, __rmqueue, __rmqueue_smallest
from cmasim.mm.watermark import wmark_pages, zone_watermark_ok


@kjit_inline
def pcp_base(C, zslot, cpu):
    return C[H_PCP] + (zslot * C[H_NCPU] + cpu) * PS


@kjit_inline
def order_to_pindex(C, order, mt):
    """order_to_pindex() as policy data; -1 when (order, mt) has no per-CPU list."""
    return C[C[H_POL] + PL_PCP_PINDEX + order * MIGRATE_TYPES + mt]


# --- refill -------------------------------------------------------------------------------------
@kjit_inline
def nr_pcp_alloc(C, zb, pc, order):
    """nr_pcp_alloc() (v6.7+) / the v6.1 batch rule: how many blocks rmqueue_bulk() takes."""
    base_batch = C[zb + Z_BATCH]
    if policy_version(C) < 607:
        batch = base_batch
        if batch > 1:
            b = batch >> order
            batch = b if b > 2 else 2
        return batch
    high_min = C[zb + Z_HIGH_MIN]
    high_max = C[zb + Z_HIGH_MAX]
    high = clamp(C[pc + P_HIGH], high_min, high_max)
    C[pc + P_HIGH] = high
    if high < base_batch:
        return 1
    if order:
        batch = base_batch
    else:
        batch = base_batch << C[pc + P_ALLOC_FACTOR]
    if high_min != high_max and not (C[zb + Z_FLAGS] & ZONE_BELOW_HIGH):
        high = high + batch
        if high > high_max:
            high = high_max
        C[pc + P_HIGH] = high
    if not order:
        max_nr_alloc = high - C[pc + P_COUNT] - base_batch
        if max_nr_alloc < base_batch:
            max_nr_alloc = base_batch
        if batch <= max_nr_alloc and C[pc + P_ALLOC_FACTOR] < PCP_BATCH_SCALE_MAX:
            C[pc + P_ALLOC_FACTOR] += 1
        if batch > max_nr_alloc:
            batch = max_nr_alloc
    if batch > 1:
        b = batch >> order
        batch = b if b > 2 else 2
    return batch


@kjit_inline
def clamp(x, lo, hi):
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


@kjit_inline
def rmqueue_cma_only(C, mt, alloc_flags):
    """True when __rmqueue_cma() of the 2020 __GFP_CMA design replaces __rmqueue(): a MOVABLE
    request with ALLOC_CMA (i.e. __GFP_CMA) under a policy with PL_CMA_ONLY_RMQUEUE."""
    return C[C[H_POL] + PL_CMA_ONLY_RMQUEUE] != 0 and mt == MIGRATE_MOVABLE and (alloc_flags & ALLOC_CMA) != 0


@kjit_inline
def __rmqueue_cma(S, C, zslot, order):
    """__rmqueue_cma() of the 2020 posting ("cma: redirect page allocation to CMA", LKML
    <3f99bcf028ea…@codeaurora.org>, 5.10-rc1 base; the same in ACK android11-5.4 b9d3d8f1e991):
    a MOVABLE __GFP_CMA request takes the CMA free lists only (__rmqueue_cma_fallback), with no
    MOVABLE fallback; NULL once CMA is empty. Not modelled: the zone->cma_alloc switch to
    __rmqueue_smallest(MOVABLE) while alloc_contig_range() runs, and ACK 5.4's
    __rmqueue_fallback() retry loop (it converts UNMOVABLE/RECLAIMABLE blocks and retries CMA,
    so it never returns a non-CMA page either)."""
    return __rmqueue_smallest(S, C, zslot, order, MIGRATE_CMA)


@kjit_fixed
def rmqueue_bulk(S, C, zslot, order, count, lst, mt, alloc_flags):
    """rmqueue_bulk(): `count` blocks via __rmqueue() under one zone lock, appended to the tail.

    2020 design (PL_CMA_ONLY_RMQUEUE): the patch's rmqueue_bulk(…, int cma) calls
    __rmqueue_cma() for every block of a __GFP_CMA refill, so the MOVABLE list gets CMA pages only."""
    vm_add(C, VM_ZONE_LOCK, 1)
    vm_add(C, VM_PCP_REFILLS, 1)
    C[H_RMQM] = RMQUEUE_NORMAL
    cma_only = rmqueue_cma_only(C, mt, alloc_flags)
    i = 0
    while i < count:
        if cma_only:
            p = __rmqueue_cma(S, C, zslot, order)
        else:
            p = __rmqueue(S, C, zslot, order, mt, alloc_flags)
        if p < 0:
            break
        list_add_tail(S, C, lst, p)
        # v6.1 caches the source list's type in the page (set_pcppage_migratetype).
        set_pinfo(S, C, p, order, PG_PCP, C[H_LAST_MT], lst)
        i += 1
    vm_add(C, VM_PCP_REFILL_PAGES, i << order)
    return i


@kjit_fixed
def rmqueue_pcplist(S, C, zslot, cpu, order, mt, alloc_flags, pindex):
    """rmqueue_pcplist()/__rmqueue_pcplist(): take the first block of the list, refilling if empty.

    Returns the pfn, or -1 when the refill found nothing. Sets C[H_LAST_MT] = -1 on a hit
    and >= 0 after a refill, so the caller can count per-CPU hits.
    """
    zb = zone_base(C, zslot)
    pc = pcp_base(C, zslot, cpu)
    if policy_version(C) >= 607:
        C[pc + P_FREE_COUNT] >>= 1
    else:
        C[pc + P_FREE_FACTOR] >>= 1
    lst = pcp_list_id(C, zslot, cpu, pindex)
    refilled = False
    if list_empty(C, lst):
        n = nr_pcp_alloc(C, zb, pc, order)
        got = rmqueue_bulk(S, C, zslot, order, n, lst, mt, alloc_flags)
        C[pc + P_COUNT] += got << order
        if got == 0:
            return -1
        refilled = True
    p = list_first(S, C, lst)
    list_del(S, C, lst, p)
    # A hint for the next take from this list (changes nothing): the new first block's link,
    # page and owner words, each a cache miss on a random page otherwise (for speed).
    nx = list_first(S, C, lst)
    if nx >= 0:
        prefetch(S, NODE_W * nx)  # links, page word and owner word: one line
        prefetch(S, C[H_HANDLE] + nx)
    C[pc + P_COUNT] -= 1 << order
    C[H_LAST_MT] = 1 if refilled else -1
    return p


# --- freeing -------------------------------------------------------------------------------------
@kjit_inline
def nr_pcp_high(C, zb, pc, batch, free_high):
    """nr_pcp_high() (v6.7+ auto-tuning, or the v6.1 fixed high)."""
    if policy_version(C) < 607:
        if free_high:
            return 0
        high = C[pc + P_HIGH]
        if C[zb + Z_FLAGS] & ZONE_RECLAIM_ACTIVE:
            return min(batch << 2, high)
        return high
    high_min = C[zb + Z_HIGH_MIN]
    high_max = C[zb + Z_HIGH_MAX]
    high = clamp(C[pc + P_HIGH], high_min, high_max)
    C[pc + P_HIGH] = high
    if high == 0:
        return 0
    if free_high:
        h = high - (batch << PCP_BATCH_SCALE_MAX)
        C[pc + P_HIGH] = h if h > high_min else high_min
        return 0
    if C[zb + Z_FLAGS] & ZONE_RECLAIM_ACTIVE:
        fc = C[pc + P_FREE_COUNT] if C[pc + P_FREE_COUNT] > batch else batch
        h = high - fc
        C[pc + P_HIGH] = h if h > high_min else high_min
        return min(batch << 2, C[pc + P_HIGH])
    if high_min == high_max:
        return high
    if C[zb + Z_FLAGS] & ZONE_BELOW_HIGH:
        fc = C[pc + P_FREE_COUNT] if C[pc + P_FREE_COUNT] > batch else batch
        h = high - fc
        C[pc + P_HIGH] = h if h > high_min else high_min
        high = C[pc + P_COUNT] if C[pc + P_COUNT] > high_min else high_min
    elif C[pc + P_COUNT] >= high:
        need_high = C[pc + P_FREE_COUNT] + batch
        if C[pc + P_HIGH] < need_high:
            C[pc + P_HIGH] = clamp(need_high, high_min, high_max)
    return high


@kjit_inline
def nr_pcp_free(C, pc, batch, high, free_high):
    """nr_pcp_free(): how many pages free_pcppages_bulk() gives back."""
    count = C[pc + P_COUNT]
    if policy_version(C) < 607:
        if free_high:
            return count
        if high < batch:
            return 1
        min_nr = batch
        max_nr = high - batch
        b = batch << C[pc + P_FREE_FACTOR]
        if b < max_nr and C[pc + P_FREE_FACTOR] < PCP_BATCH_SCALE_MAX:
            C[pc + P_FREE_FACTOR] += 1
        return clamp(b, min_nr, max_nr)
    if free_high:
        m = batch << PCP_BATCH_SCALE_MAX
        return count if count < m else m
    if high < batch:
        return 1
    return clamp(C[pc + P_FREE_COUNT], batch, high - batch)


@kjit_inline
def prefetch_drain_next(S, C, p):
    """A hint for free_pcppages_bulk(), which takes a list's blocks from the tail: the next one
    it takes is `p`'s predecessor, whose page word and both list links it reads (the next link
    is written as soon as `p` is unlinked), one page record; its order-0 buddy's record shares
    the cache line. It is a cache miss on a random page otherwise, one list walk step after
    another; prefetched while `p` is freed, it overlaps with that work. Changes nothing (a
    prefetch of the list's sentinel when `p` is the last block is harmless). Compiled only
    (`PREFETCH_HINTS`): interpreted, there is nothing to prefetch (for speed)."""
    q = S[NODE_W * p + F_PREV]
    prefetch(S, NODE_W * q)  # its page record: links and page word, one line


@kjit_fixed
def free_pcppages_bulk(S, C, zslot, cpu, count, pindex):
    """free_pcppages_bulk(): round-robin over non-empty lists from `pindex`, coldest (tail) first."""
    pc = pcp_base(C, zslot, cpu)
    if count > C[pc + P_COUNT]:
        count = C[pc + P_COUNT]
    if count <= 0:
        return
    nl = C[C[H_POL] + PL_NR_PCP_LISTS]
    v = policy_version(C)
    vm_add(C, VM_ZONE_LOCK, 1)
    vm_add(C, VM_PCP_DRAINS, 1)
    pindex -= 1
    while count > 0:
        while True:
            pindex += 1
            if pindex > nl - 1:
                pindex = 0
            lst = pcp_list_id(C, zslot, cpu, pindex)
            if not list_empty(C, lst):
                break
        while True:
            p = list_last(S, C, lst)
            if PREFETCH_HINTS:
                prefetch_drain_next(S, C, p)
            w = pinfo(S, C, p)
            order = pi_order(w)
            if v >= 610:
                mt = get_pfnblock_migratetype(S, C, p)
            else:
                # v6.1: the cached type; every page's block type is re-read while the zone has
                # any isolated pageblock (page_alloc.c:free_pcppages_bulk, has_isolate_pageblock).
                mt = pi_aux(w)
                if C[zone_base(C, zslot) + Z_NR_ISOLATE_PB] > 0:
                    mt = get_pfnblock_migratetype(S, C, p)
            list_del(S, C, lst, p)
            count -= 1 << order
            C[pc + P_COUNT] -= 1 << order
            vm_add(C, VM_PCP_DRAIN_PAGES, 1 << order)
            __free_one_page(S, C, zslot, p, order, mt, False)
            trace_emit(C, TR_MM_PAGE_PCPU_DRAIN, p, order, mt, 0, 0, 0, 0)
            if count <= 0 or list_empty(C, lst):
                break


@kjit_fixed
def free_unref_page_commit(S, C, zslot, cpu, p, mt, order, pindex):
    """free_unref_page_commit(): put a block at the head of its list; drain when count >= high.

    After a drain, a zone marked ZONE_BELOW_HIGH that passes its high watermark again gets
    the flag cleared (v6.7+), which lets pcp->high grow back; the test is zone_watermark_ok()
    on the folded NR_FREE_PAGES. Kernel: mm/page_alloc.c free_unref_page_commit() /
    free_frozen_page_commit() (v6.14+)."""
    zb = zone_base(C, zslot)
    pc = pcp_base(C, zslot, cpu)
    v = policy_version(C)
    if v >= 607:
        C[pc + P_ALLOC_FACTOR] >>= 1
    vm_add(C, VM_PGFREE, 1 << order)
    vm_add(C, VM_PCP_FREES, 1)
    lst = pcp_list_id(C, zslot, cpu, pindex)
    list_add_head(S, C, lst, p)
    set_pinfo(S, C, p, order, PG_PCP, mt, lst)
    C[pc + P_COUNT] += 1 << order
    batch = C[zb + Z_BATCH]
    free_high = False
    if v >= 607:
        flags = C[pc + P_FLAGS]
        if order and order <= PAGE_ALLOC_COSTLY_ORDER:
            thr = batch
            if v >= 616:
                thr = batch + C[zb + Z_HIGH_MIN] // 2
            free_high = (C[pc + P_FREE_COUNT] >= thr and (flags & PCPF_PREV_FREE_HIGH_ORDER) != 0
                         and ((flags & PCPF_FREE_HIGH_BATCH) == 0 or C[pc + P_COUNT] >= batch))
            C[pc + P_FLAGS] = flags | PCPF_PREV_FREE_HIGH_ORDER
        elif flags & PCPF_PREV_FREE_HIGH_ORDER:
            C[pc + P_FLAGS] = flags & ~PCPF_PREV_FREE_HIGH_ORDER
        if C[pc + P_FREE_COUNT] < (batch << PCP_BATCH_SCALE_MAX):
            C[pc + P_FREE_COUNT] += 1 << order
    else:
        free_high = C[pc + P_FREE_FACTOR] > 0 and order > 0 and order <= PAGE_ALLOC_COSTLY_ORDER
    high = nr_pcp_high(C, zb, pc, batch, free_high)
    if C[pc + P_COUNT] >= high:
        free_pcppages_bulk(S, C, zslot, cpu, nr_pcp_free(C, pc, batch, high, free_high), pindex)
        if v >= 607 and (C[zb + Z_FLAGS] & ZONE_BELOW_HIGH) and zone_watermark_ok(
                C, zslot, 0, wmark_pages(C, zb, ALLOC_WMARK_HIGH), ZONE_MOVABLE, 0):
            C[zb + Z_FLAGS] &= ~ZONE_BELOW_HIGH
        return True
    return False


# --- draining ---------------------------------------------------------------------------------------
@kjit
def drain_pages_zone(S, C, zslot, cpu):
    """drain_pages_zone(): empty one CPU's pageset (v6.12+ in chunks of batch << 5 from pindex 0)."""
    zb = zone_base(C, zslot)
    pc = pcp_base(C, zslot, cpu)
    if policy_version(C) < 612:
        free_pcppages_bulk(S, C, zslot, cpu, C[pc + P_COUNT], 0)
        return
    chunk = C[zb + Z_BATCH] << PCP_BATCH_SCALE_MAX
    while C[pc + P_COUNT] > 0:
        n = C[pc + P_COUNT]
        free_pcppages_bulk(S, C, zslot, cpu, n if n < chunk else chunk, 0)


@kjit
def drain_all_pages(S, C, zslot):
    """drain_all_pages(zone): drain every CPU that holds pages (zslot < 0: all zones)."""
    vm_add(C, VM_DRAIN_ALL, 1)
    saved = C[H_CPU]
    for z in range(C[H_NZONES]):
        if zslot >= 0 and z != zslot:
            continue
        for cpu in range(C[H_NCPU]):
            if C[pcp_base(C, z, cpu) + P_COUNT] > 0:
                C[H_CPU] = cpu
                drain_pages_zone(S, C, z, cpu)
    C[H_CPU] = saved


@kjit
def decay_pcp_high(S, C, zslot, cpu):
    """decay_pcp_high() (v6.7+): from the vmstat worker each second, shrink high and free the excess."""
    zb = zone_base(C, zslot)
    pc = pcp_base(C, zslot, cpu)
    high_min = C[zb + Z_HIGH_MIN]
    batch = C[zb + Z_BATCH]
    if C[pc + P_HIGH] > high_min:
        a = C[pc + P_COUNT] - (batch << PCP_BATCH_SCALE_MAX)
        b = C[pc + P_HIGH] - (C[pc + P_HIGH] >> 3)
        h = a if a > b else b
        C[pc + P_HIGH] = h if h > high_min else high_min
    to_drain = C[pc + P_COUNT] - C[pc + P_HIGH]
    while to_drain > 0:
        n = to_drain if to_drain < batch else batch
        free_pcppages_bulk(S, C, zslot, cpu, n, 0)
        to_drain -= n


@kjit_inline
def pcp_free_pindex(C, order, mt):
    """The free path's list choice: the pageblock type's list; HIGHATOMIC/CMA use MOVABLE's in
    mainline (policy table); -1 for ISOLATE or a non-PCP order (free straight to buddy)."""
    if mt == MIGRATE_ISOLATE:
        return -1
    return order_to_pindex(C, order, mt)

