"""The invariant checker: free-page accounting, buddy structure and per-list counts.

Kernel counterparts: the VM_BUG_ON/VM_WARN checks of mm/page_alloc.c (__add_to_free_list's
"page type is %lu, passed migratetype is %d", bad_range, page_is_buddy) and
mm/debug_page_alloc.c; here they are whole-state checks callable at any moment.

`check_state` is compiled like the core (it must be usable on 16 GiB states) and returns
a tuple ``(code, pfn, expected, actual)``; `cmasim.machine.InvariantViolation` turns it
into a message. Checks:

1. every list is a well-formed cycle, every node on it is a block head in the right state
   (Buddy on free lists, PCP on per-CPU lists) and of the list's order, and its length
   equals the list's block count;
2. walking each zone block by block covers every page exactly once: heads are aligned to
   their order, tails are blank, blocks stay inside the zone; the number of Buddy/PCP
   heads equals the number of list nodes (so every free page is on exactly one list);
3. no two free buddies that __free_one_page() would merge are left unmerged;
4. NR_FREE_PAGES, NR_FREE_CMA_PAGES, free highatomic, NR_FREE_PAGES_BLOCKS, nr_free per
   order and every pcp->count equal what the lists hold;
5. v6.10+: every free block sits on the list of its pageblock's type (freelist hygiene);
6. the zone's isolated-pageblock count matches the isolate bits;
7. free and per-CPU blocks carry no owner, nor do the tail pages of allocated blocks (a
   split THP's pages are order-0 heads with their own owner words); every live handle points at an allocated head
   whose HANDLE entry points back, and the live-page counter adds up;
8. reclaim counters: pgscan_kswapd >= pgsteal_kswapd and pgscan_direct >= pgsteal_direct
   (both count pages; a page is scanned before it is reclaimed, mm/vmscan.c
   shrink_inactive_list());
9. the last OOM victim's memory is gone: no live handle holds an anonymous block of that
   task (cmasim.mm.oom_kill; its pinned blocks were dropped by their owner and wait for
   the unpin, so they hold no handle);
10. the per-CPU vmstat deltas add up: folded NR_FREE_PAGES (NR_FREE_CMA_PAGES) plus every
   CPU's diff equals the exact count, and no diff lies outside [-stat_threshold,
   stat_threshold] of the threshold that made it (at most 125; mm/vmstat.c
   __mod_zone_page_state() folds anything beyond it; cmasim.mm.zone_stat).
"""

import numpy as np

from cmasim.mm.jit import kjit
from cmasim.mm.mmzone import (
    H_HANDLE, H_UNMAPPED, H_LCNT, H_LIVE, H_LIVE_DENSE, H_LIVE_PAGES, H_LPZ, H_N, H_NCPU, H_NLIVE, H_NZONES,
    H_OOM_LAST_VICTIM, H_POL, H_PB, H_VM, OW_ANON, OW_KIND_MASK, OW_TASK_MASK, OW_TASK_SHIFT, VM_PGSCAN_DIRECT, VM_PGSCAN_KSWAPD, VM_PGSTEAL_DIRECT, VM_PGSTEAL_KSWAPD,
    MAX_PAGE_ORDER, MIGRATE_CMA, MIGRATE_HIGHATOMIC, MIGRATE_ISOLATE, MIGRATE_TYPES,
    NR_BUDDY_LISTS, NR_PAGE_ORDERS, NR_PCP_LISTS_MAX, PAGEBLOCK_ORDER, PB_ISOLATE,
    PG_ALLOC, PG_BUDDY, PG_PCP, PG_TAIL, PL_NR_PCP_LISTS, P_COUNT, P_VM_DIFF_CMA, P_VM_DIFF_FREE,
    Z_VM_NR_FREE, Z_VM_NR_FREE_CMA,
    Z_AREA, Z_END, Z_NR_FREE, Z_NR_FREE_BLOCKS, Z_NR_FREE_CMA, Z_NR_FREE_HIGHATOMIC, Z_NR_ISOLATE_PB,
    Z_START,
    NODE_W, F_NEXT, F_OWNER, F_PREV,
)
from cmasim.mm.freelist import (
    get_pfnblock_migratetype, migratetype_is_mergeable, pageblock_zone, pi_list, pi_order, pi_state, pinfo,
    policy_version, zone_base,
)
from cmasim.mm.pcp import pcp_base

OK = 0
E_LIST_LINK = 1  # prev/next links disagree
E_LIST_NODE_STATE = 2  # node on a list is not a head in the list's state
E_LIST_NODE_LIST = 3  # node's recorded list id differs from the list it is on
E_LIST_ORDER = 4  # node's order differs from the free list's order
E_LIST_COUNT = 5  # list length differs from its block count
E_LIST_CYCLE = 6  # list longer than the number of pages
E_HEAD_ALIGN = 7  # block head not aligned to its order
E_HEAD_RANGE = 8  # block runs past its zone
E_TAIL_DIRTY = 9  # a page inside a block is not blank
E_HEADS_VS_LISTS = 10  # Buddy/PCP heads in the page walk differ from list nodes
E_UNMERGED = 11  # two free buddies the rules would merge
E_NR_FREE = 12
E_NR_FREE_CMA = 13
E_NR_FREE_HIGHATOMIC = 14
E_NR_FREE_BLOCKS = 15
E_AREA_NR_FREE = 16
E_PCP_COUNT = 17
E_HYGIENE = 18  # free block on a list other than its pageblock's type (v6.10+)
E_ISOLATE_COUNT = 19
E_PCP_ORDER = 20  # blocks of different orders on one per-CPU list
E_OWNER_ON_FREE = 21  # a free or per-CPU block still has an owner word
E_HANDLE = 22  # LIVE[h] and HANDLE[pfn] disagree, or a handle points at a non-allocated block
E_LIVE_PAGES = 23  # the live-page counter differs from what the handles hold
E_LIST_ZONE = 24  # a block on a list of another zone
E_MERGED_ACROSS = 25  # a free block spans pageblocks whose types may not merge
E_TAIL_OWNER = 26  # a page inside an allocated block has an owner word or a handle (split THPs)
E_PGSCAN = 27  # pgsteal_* exceeds pgscan_* (pages reclaimed without being scanned)
E_OOM_VICTIM_ALIVE = 28  # a live handle still holds memory of the last OOM victim
E_VMSTAT_DRIFT = 29  # folded NR_FREE_PAGES + per-CPU diffs != exact count
E_VMSTAT_DRIFT_CMA = 30  # folded NR_FREE_CMA_PAGES + per-CPU diffs != exact count
E_VMSTAT_DIFF_RANGE = 31  # a per-CPU diff beyond the largest possible threshold
E_UNMAPPED = 32  # an unmapped-subpage count (folio.py UNMAPPED) not at an allocated large folio's head, or >= its size


@kjit
def check_lists(S, C):
    """Checks 1: link integrity, node state/list/order, lengths. Returns (code, pfn, exp, got, nodes)."""
    n = C[H_N]
    lpz = C[H_LPZ]
    nodes = 0
    for z in range(C[H_NZONES]):
        for local in range(lpz):
            lst = z * lpz + local
            s = n + lst
            cnt = 0
            cur = s
            order0 = -1
            while True:
                nx = S[NODE_W * cur + F_NEXT]
                if nx < 0 or S[NODE_W * nx + F_PREV] != cur:
                    return E_LIST_LINK, cur, lst, nx, 0
                cur = nx
                if cur == s:
                    break
                cnt += 1
                if cnt > n:
                    return E_LIST_CYCLE, cur, lst, cnt, 0
                w = pinfo(S, C, cur)
                want = PG_BUDDY if local < NR_BUDDY_LISTS else PG_PCP
                if pi_state(w) != want:
                    return E_LIST_NODE_STATE, cur, want, pi_state(w), 0
                if pi_list(w) != lst:
                    return E_LIST_NODE_LIST, cur, lst, pi_list(w), 0
                if pageblock_zone(S, C, cur) != z:
                    return E_LIST_ZONE, cur, z, pageblock_zone(S, C, cur), 0
                if local < NR_BUDDY_LISTS:
                    if pi_order(w) != local // MIGRATE_TYPES:
                        return E_LIST_ORDER, cur, local // MIGRATE_TYPES, pi_order(w), 0
                else:
                    if order0 < 0:
                        order0 = pi_order(w)
                    elif pi_order(w) != order0:
                        return E_PCP_ORDER, cur, order0, pi_order(w), 0
            if cnt != C[C[H_LCNT] + lst]:
                return E_LIST_COUNT, lst, C[C[H_LCNT] + lst], cnt, 0
            nodes += cnt
    return OK, 0, 0, 0, nodes


@kjit
def check_state(S, C):
    """Run every check; (0, 0, 0, 0) when the state is consistent."""
    code, pfn, exp, got, nodes = check_lists(S, C)
    if code != OK:
        return code, pfn, exp, got
    v = policy_version(C)
    heads_on_lists = 0
    for z in range(C[H_NZONES]):
        zb = zone_base(C, z)
        start = C[zb + Z_START]
        end = C[zb + Z_END]
        nr_free = 0
        nr_cma = 0
        nr_ha = 0
        nr_blocks = 0
        area = np_zeros_area()
        p = start
        while p < end:
            w = pinfo(S, C, p)
            st = pi_state(w)
            if st == PG_TAIL:
                return E_TAIL_DIRTY, p, 1, 0  # a page that heads nothing and is covered by nothing
            o = pi_order(w)
            if p & ((1 << o) - 1):
                return E_HEAD_ALIGN, p, o, 0
            if p + (1 << o) > end:
                return E_HEAD_RANGE, p, end, p + (1 << o)
            for q in range(p + 1, p + (1 << o)):
                if pinfo(S, C, q) != 0:
                    return E_TAIL_DIRTY, q, 0, pinfo(S, C, q)
                if S[C[H_UNMAPPED] + q] != 0:
                    return E_UNMAPPED, q, o, S[C[H_UNMAPPED] + q]
            u = S[C[H_UNMAPPED] + p]
            if u != 0 and (st != PG_ALLOC or u < 0 or u >= (1 << o)):
                return E_UNMAPPED, p, o, u
            if st == PG_ALLOC:
                for q in range(p + 1, p + (1 << o)):
                    if S[NODE_W * q + F_OWNER] != 0 or S[C[H_HANDLE] + q] != -1:
                        return E_TAIL_OWNER, q, p, S[C[H_HANDLE] + q]
            if st == PG_BUDDY or st == PG_PCP:
                heads_on_lists += 1
                if S[NODE_W * p + F_OWNER] != 0:
                    return E_OWNER_ON_FREE, p, 0, S[NODE_W * p + F_OWNER]
            if st == PG_BUDDY:
                lmt = pi_list(w) % C[H_LPZ] % MIGRATE_TYPES
                area[o] += 1
                if lmt != MIGRATE_ISOLATE:
                    nr_free += 1 << o
                    if o >= PAGEBLOCK_ORDER:
                        nr_blocks += 1 << o
                if lmt == MIGRATE_CMA:
                    nr_cma += 1 << o
                elif lmt == MIGRATE_HIGHATOMIC:
                    nr_ha += 1 << o
                if o > PAGEBLOCK_ORDER:
                    # A free block spanning pageblocks: __free_one_page() only merges those
                    # if the types agree or are both mergeable (all versions).
                    m1 = get_pfnblock_migratetype(S, C, p)
                    m2 = get_pfnblock_migratetype(S, C, p + (1 << PAGEBLOCK_ORDER))
                    if m1 != m2 and not (migratetype_is_mergeable(m1) and migratetype_is_mergeable(m2)):
                        return E_MERGED_ACROSS, p, m1, m2
                if v >= 610:
                    nblk = 1 if o < PAGEBLOCK_ORDER else 1 << (o - PAGEBLOCK_ORDER)
                    for b in range(nblk):
                        bmt = get_pfnblock_migratetype(S, C, p + (b << PAGEBLOCK_ORDER))
                        if bmt != lmt:
                            return E_HYGIENE, p, bmt, lmt
                if o < MAX_PAGE_ORDER:
                    q = p ^ (1 << o)
                    if q >= start and q < end:
                        wq = pinfo(S, C, q)
                        if pi_state(wq) == PG_BUDDY and pi_order(wq) == o:
                            if o < PAGEBLOCK_ORDER:
                                return E_UNMERGED, p, q, o
                            m1 = get_pfnblock_migratetype(S, C, p)
                            m2 = get_pfnblock_migratetype(S, C, q)
                            if m1 == m2 or (migratetype_is_mergeable(m1) and migratetype_is_mergeable(m2)):
                                return E_UNMERGED, p, q, o
            p += 1 << o
        if nr_free != C[zb + Z_NR_FREE]:
            return E_NR_FREE, z, C[zb + Z_NR_FREE], nr_free
        if nr_cma != C[zb + Z_NR_FREE_CMA]:
            return E_NR_FREE_CMA, z, C[zb + Z_NR_FREE_CMA], nr_cma
        if nr_ha != C[zb + Z_NR_FREE_HIGHATOMIC]:
            return E_NR_FREE_HIGHATOMIC, z, C[zb + Z_NR_FREE_HIGHATOMIC], nr_ha
        if nr_blocks != C[zb + Z_NR_FREE_BLOCKS]:
            return E_NR_FREE_BLOCKS, z, C[zb + Z_NR_FREE_BLOCKS], nr_blocks
        folded = C[zb + Z_VM_NR_FREE]
        folded_cma = C[zb + Z_VM_NR_FREE_CMA]
        for cpu in range(C[H_NCPU]):
            pc = pcp_base(C, z, cpu)
            d, dc = C[pc + P_VM_DIFF_FREE], C[pc + P_VM_DIFF_CMA]
            if d > 125 or d < -125 or dc > 125 or dc < -125:
                return E_VMSTAT_DIFF_RANGE, cpu, d, dc
            folded += d
            folded_cma += dc
        if folded != nr_free:
            return E_VMSTAT_DRIFT, z, nr_free, folded
        if folded_cma != nr_cma:
            return E_VMSTAT_DRIFT_CMA, z, nr_cma, folded_cma
        for o in range(NR_PAGE_ORDERS):
            if area[o] != C[zb + Z_AREA + o]:
                return E_AREA_NR_FREE, z, C[zb + Z_AREA + o], area[o]
        niso = 0
        for b in range(start >> PAGEBLOCK_ORDER, end >> PAGEBLOCK_ORDER):
            if S[C[H_PB] + b] & PB_ISOLATE:
                niso += 1
        if niso != C[zb + Z_NR_ISOLATE_PB]:
            return E_ISOLATE_COUNT, z, C[zb + Z_NR_ISOLATE_PB], niso
        nl = C[C[H_POL] + PL_NR_PCP_LISTS]
        for cpu in range(C[H_NCPU]):
            pages = 0
            for i in range(NR_PCP_LISTS_MAX):
                lst = z * C[H_LPZ] + NR_BUDDY_LISTS + cpu * NR_PCP_LISTS_MAX + i
                s = C[H_N] + lst
                cur = S[NODE_W * s + F_NEXT]
                if i >= nl and cur != s:
                    return E_PCP_COUNT, cpu, 0, i
                while cur != s:
                    pages += 1 << pi_order(pinfo(S, C, cur))
                    cur = S[NODE_W * cur + F_NEXT]
            if pages != C[pcp_base(C, z, cpu) + P_COUNT]:
                return E_PCP_COUNT, cpu, C[pcp_base(C, z, cpu) + P_COUNT], pages
    if heads_on_lists != nodes:
        return E_HEADS_VS_LISTS, 0, nodes, heads_on_lists
    live_pages = 0
    victim = C[H_OOM_LAST_VICTIM]
    nh = C[H_NLIVE] if C[H_LIVE_DENSE] else C[H_N]
    for h in range(nh):
        p = S[C[H_LIVE] + h]
        if p < 0:
            if C[H_LIVE_DENSE]:
                return E_HANDLE, h, 0, p
            continue
        if pi_state(pinfo(S, C, p)) != PG_ALLOC or S[C[H_HANDLE] + p] != h:
            return E_HANDLE, h, p, S[C[H_HANDLE] + p]
        live_pages += 1 << pi_order(pinfo(S, C, p))
        w = S[NODE_W * p + F_OWNER]
        if victim > 0 and (w & OW_KIND_MASK) == OW_ANON and ((w >> OW_TASK_SHIFT) & OW_TASK_MASK) == victim:
            return E_OOM_VICTIM_ALIVE, h, victim, p
    if live_pages != C[H_LIVE_PAGES]:
        return E_LIVE_PAGES, 0, C[H_LIVE_PAGES], live_pages
    vm = C[H_VM]
    if C[vm + VM_PGSCAN_KSWAPD] < C[vm + VM_PGSTEAL_KSWAPD]:
        return E_PGSCAN, 0, C[vm + VM_PGSCAN_KSWAPD], C[vm + VM_PGSTEAL_KSWAPD]
    if C[vm + VM_PGSCAN_DIRECT] < C[vm + VM_PGSTEAL_DIRECT]:
        return E_PGSCAN, 1, C[vm + VM_PGSCAN_DIRECT], C[vm + VM_PGSTEAL_DIRECT]
    return OK, 0, 0, 0


@kjit
def np_zeros_area():
    """A zeroed per-order counter array (works compiled and interpreted)."""
    return np.zeros(NR_PAGE_ORDERS, dtype=np.int64)
