"""Intrusive lists, page/pageblock words, free-list add/remove and free-page accounting.

Kernel: include/linux/list.h (list_add, list_add_tail, list_del), mm/page_alloc.c
(__add_to_free_list, move_to_free_list, __del_page_from_free_list, account_freepages,
get_pfnblock_migratetype, set_pageblock_migratetype, change_pageblock_range) and
include/linux/pageblock-flags.h (v6.17+ layout: a standalone isolate bit).

Every function takes the packed state explicitly: ``S`` (int32) and ``C`` (int64), see
`cmasim.mm.mmzone`. Trace records are appended to the tail of ``C`` by `trace_emit`.
"""

from cmasim.mm.jit import kjit, kjit_fixed, kjit_inline
from cmasim.mm.mmzone import (
    H_LCNT, H_N, H_PB, H_ZONE, H_LPZ, H_TRACE_ON, H_TRACE_N, H_TRACE_CAP,
    H_TRACE_LOST, H_NOW, H_CPU, H_POL, H_VM,
    MIGRATE_CMA, MIGRATE_HIGHATOMIC, MIGRATE_ISOLATE, MIGRATE_TYPES, NR_BUDDY_LISTS,
    NR_PCP_LISTS_MAX, PAGEBLOCK_ORDER, PB_ISOLATE, PB_MT_MASK, PB_ZONE_SHIFT,
    PG_BUDDY, PI_AUX_SHIFT, PI_LIST_SHIFT, PI_ORDER_MASK, PI_STATE_SHIFT,
    TR_SIZE, H_TRACE_BASE, Z_AREA, Z_NR_FREE_BLOCKS, Z_NR_FREE_HIGHATOMIC, ZS,
    PL_VERSION,
    NODE_W, F_NEXT, F_PINFO, F_PREV,
)
from cmasim.mm.zone_stat import account_free_counters


# --- intrusive doubly-linked lists ----------------------------------------------------------
@kjit_inline
def list_add_head(S, C, lst, p):
    """list_add(): insert page `p` after the sentinel of list `lst`; count one block.

    Links live in the page records (`cmasim.mm.mmzone` NODE_W, F_NEXT, F_PREV)."""
    s = C[H_N] + lst
    nx = S[NODE_W * s + F_NEXT]
    S[NODE_W * p + F_NEXT] = nx
    S[NODE_W * p + F_PREV] = s
    S[NODE_W * nx + F_PREV] = p
    S[NODE_W * s + F_NEXT] = p
    C[C[H_LCNT] + lst] += 1


@kjit_inline
def list_add_tail(S, C, lst, p):
    """list_add_tail(): insert page `p` before the sentinel of list `lst`."""
    s = C[H_N] + lst
    pv = S[NODE_W * s + F_PREV]
    S[NODE_W * p + F_NEXT] = s
    S[NODE_W * p + F_PREV] = pv
    S[NODE_W * pv + F_NEXT] = p
    S[NODE_W * s + F_PREV] = p
    C[C[H_LCNT] + lst] += 1


@kjit_inline
def list_del(S, C, lst, p):
    """list_del(): unlink page `p` from list `lst` (O(1), any position)."""
    nx = S[NODE_W * p + F_NEXT]
    pv = S[NODE_W * p + F_PREV]
    S[NODE_W * pv + F_NEXT] = nx
    S[NODE_W * nx + F_PREV] = pv
    S[NODE_W * p + F_NEXT] = -1
    S[NODE_W * p + F_PREV] = -1
    C[C[H_LCNT] + lst] -= 1


@kjit_inline
def list_first(S, C, lst):
    """list_first_entry_or_null(): the head page of `lst`, or -1."""
    s = C[H_N] + lst
    nx = S[NODE_W * s + F_NEXT]
    if nx == s:
        return -1
    return nx


@kjit_inline
def list_last(S, C, lst):
    """list_last_entry(): the tail page of `lst`, or -1."""
    s = C[H_N] + lst
    pv = S[NODE_W * s + F_PREV]
    if pv == s:
        return -1
    return pv


@kjit_inline
def list_empty(C, lst):
    return C[C[H_LCNT] + lst] == 0


# --- page words -------------------------------------------------------------------------------
@kjit_inline
def set_pinfo(S, C, p, order, state, aux, lst):
    S[NODE_W * p + F_PINFO] = order | (state << PI_STATE_SHIFT) | (aux << PI_AUX_SHIFT) | (lst << PI_LIST_SHIFT)


@kjit_inline
def clear_pinfo(S, C, p):
    S[NODE_W * p + F_PINFO] = 0


@kjit_inline
def pinfo(S, C, p):
    return S[NODE_W * p + F_PINFO]


@kjit_inline
def pi_order(w):
    return w & PI_ORDER_MASK


@kjit_inline
def pi_state(w):
    return (w >> PI_STATE_SHIFT) & 3


@kjit_inline
def pi_aux(w):
    return (w >> PI_AUX_SHIFT) & 7


@kjit_inline
def pi_list(w):
    return w >> PI_LIST_SHIFT


# --- pageblock words -------------------------------------------------------------------------------
@kjit_inline
def pageblock_zone(S, C, p):
    """Zone slot of the pageblock holding `p` (page_zone())."""
    return (S[C[H_PB] + (p >> PAGEBLOCK_ORDER)] >> PB_ZONE_SHIFT) & 0xF


@kjit_inline
def zone_base(C, zslot):
    return C[H_ZONE] + zslot * ZS


@kjit_inline
def get_pfnblock_migratetype(S, C, p):
    """get_pfnblock_migratetype(): ISOLATE while the isolate bit is set (v6.17+), else the type bits."""
    w = S[C[H_PB] + (p >> PAGEBLOCK_ORDER)]
    if w & PB_ISOLATE:
        return MIGRATE_ISOLATE
    return w & PB_MT_MASK


@kjit_inline
def get_pageblock_type_bits(S, C, p):
    """The 3 migratetype bits, ignoring the isolate bit (the type that survives isolation)."""
    return S[C[H_PB] + (p >> PAGEBLOCK_ORDER)] & PB_MT_MASK


@kjit
def set_pageblock_migratetype(S, C, p, mt):
    """set_pageblock_migratetype(): write the type bits; ISOLATE sets the standalone bit."""
    i = C[H_PB] + (p >> PAGEBLOCK_ORDER)
    if mt == MIGRATE_ISOLATE:
        S[i] = S[i] | PB_ISOLATE
    else:
        S[i] = (S[i] & ~PB_MT_MASK) | mt


@kjit_fixed
def change_pageblock_range(S, C, p, start_order, mt):
    """change_pageblock_range(): retype every pageblock covered by a block of start_order >= 9."""
    n = 1 << (start_order - PAGEBLOCK_ORDER)
    for i in range(n):
        set_pageblock_migratetype(S, C, p + (i << PAGEBLOCK_ORDER), mt)


@kjit_inline
def migratetype_is_mergeable(mt):
    return mt < 3


# --- list ids -----------------------------------------------------------------------------------------
@kjit_inline
def free_list_id(C, zslot, order, mt):
    return zslot * C[H_LPZ] + order * MIGRATE_TYPES + mt


@kjit_inline
def pcp_list_id(C, zslot, cpu, pindex):
    return zslot * C[H_LPZ] + NR_BUDDY_LISTS + cpu * NR_PCP_LISTS_MAX + pindex


@kjit_inline
def free_list_mt(C, lst):
    return (lst % C[H_LPZ]) % MIGRATE_TYPES


# --- accounting -----------------------------------------------------------------------------------------
@kjit_inline
def account_freepages(C, zb, nr, mt):
    """account_freepages() (v6.10+): counters follow the list a page is on; ISOLATE lists uncounted.

    NR_FREE_PAGES and NR_FREE_CMA_PAGES go through __mod_zone_page_state() (per-CPU deltas,
    `cmasim.mm.zone_stat`); nr_free_highatomic is a plain zone field (WRITE_ONCE), exact.
    Kernel: mm/page_alloc.c account_freepages() (v6.18)."""
    if mt == MIGRATE_ISOLATE:
        return
    account_free_counters(C, zb, nr, mt == MIGRATE_CMA)
    if mt == MIGRATE_HIGHATOMIC:
        C[zb + Z_NR_FREE_HIGHATOMIC] += nr


@kjit_fixed
def __add_to_free_list(S, C, zslot, p, order, mt, tail):
    """__add_to_free_list(): link a free block head, mark it Buddy, nr_free++ (no page accounting).

    NR_FREE_PAGES_BLOCKS (v6.15+) is kept here, for blocks of order >= pageblock_order.
    """
    lst = free_list_id(C, zslot, order, mt)
    if tail:
        list_add_tail(S, C, lst, p)
    else:
        list_add_head(S, C, lst, p)
    set_pinfo(S, C, p, order, PG_BUDDY, 0, lst)
    zb = zone_base(C, zslot)
    C[zb + Z_AREA + order] += 1
    if order >= PAGEBLOCK_ORDER and mt != MIGRATE_ISOLATE:
        C[zb + Z_NR_FREE_BLOCKS] += 1 << order


@kjit_fixed
def __del_page_from_free_list(S, C, zslot, p, order, mt):
    """__del_page_from_free_list(): unlink, clear Buddy, nr_free-- (no page accounting)."""
    lst = free_list_id(C, zslot, order, mt)
    list_del(S, C, lst, p)
    clear_pinfo(S, C, p)
    zb = zone_base(C, zslot)
    C[zb + Z_AREA + order] -= 1
    if order >= PAGEBLOCK_ORDER and mt != MIGRATE_ISOLATE:
        C[zb + Z_NR_FREE_BLOCKS] -= 1 << order


@kjit
def del_page_from_free_list(S, C, zslot, p, order, mt):
    """del_page_from_free_list(): unlink and account -2^order to `mt`."""
    __del_page_from_free_list(S, C, zslot, p, order, mt)
    account_freepages(C, zone_base(C, zslot), -(1 << order), mt)


@kjit
def move_to_free_list(S, C, zslot, p, order, old_mt, new_mt):
    """move_to_free_list(): move a free block to the **tail** of new_mt's list, moving its accounting."""
    __del_page_from_free_list(S, C, zslot, p, order, old_mt)
    __add_to_free_list(S, C, zslot, p, order, new_mt, True)
    zb = zone_base(C, zslot)
    account_freepages(C, zb, -(1 << order), old_mt)
    account_freepages(C, zb, 1 << order, new_mt)


@kjit_inline
def policy_version(C):
    return C[C[H_POL] + PL_VERSION]


@kjit_inline
def vm_add(C, idx, n):
    C[C[H_VM] + idx] += n


# --- trace buffer -------------------------------------------------------------------------------
@kjit_inline
def trace_emit(C, kind, pfn, f0, f1, f2, f3, f4, f5):
    """Append one tracepoint record if its kind is being traced.

    C[H_TRACE_ON] is a bit mask of the record kinds being traced (tracefs' per-event enable).
    The check is inlined into every caller (no call when tracing is off, the common case);
    the write is one function compiled once (`trace_record`), whatever the argument types."""
    if (C[H_TRACE_ON] >> kind) & 1 != 0:
        trace_record(C, kind, pfn, f0, f1, f2, f3, f4, f5)


@kjit_fixed
def trace_record(C, kind, pfn, f0, f1, f2, f3, f4, f5):
    """Write one record into the trace buffer; a full buffer counts it as lost (never silent)."""
    n = C[H_TRACE_N]
    if n >= C[H_TRACE_CAP]:
        C[H_TRACE_LOST] += 1
        return
    b = C[H_TRACE_BASE] + n * TR_SIZE
    C[b] = kind
    C[b + 1] = C[H_NOW]
    C[b + 2] = C[H_CPU]
    C[b + 3] = pfn
    C[b + 4] = f0
    C[b + 5] = f1
    C[b + 6] = f2
    C[b + 7] = f3
    C[b + 8] = f4
    C[b + 9] = f5
    C[H_TRACE_N] = n + 1
