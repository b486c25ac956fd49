"""Who owns an allocated block, and the handles workloads hold on blocks.

Kernel: include/linux/mm.h / mm/swap.c (folio_put(), put_page(): a page is freed when its
last reference goes, so a pinned page freed by its owner is only released at unpin),
include/linux/page-flags.h (PageAnon, PageLRU, PageDirty), folio_maybe_dma_pinned().

Per allocated head pfn: OWNER[pfn] (kind, pin count, flags; see mmzone OW_*) and
HANDLE[pfn], the workload handle that refers to the block. LIVE[h] is the reverse map.
When migration or compaction moves a block, `handle_move` re-points the handle, so a
workload's later free reaches the new page; when reclaim takes a block away,
`handle_drop` forgets it (dense mode swap-removes it from LIVE[0:NLIVE]).

`split_folio` (mm/huge_memory.c split_huge_page_to_list_to_order(), reached from
mm/migrate.c try_split_folio()) turns an allocated large folio into order-0 allocated pages
with the same owner word. The head keeps the folio's handle; in dense mode every other page
gets a handle of its own, so the workload later frees the former THP page by page (as
munmap/MADV_DONTNEED of a split THP's range does) and the live-page total is unchanged. In
sparse mode (caller-chosen handle ids) the tail pages have no handle and leave the live-page
count; only reclaim frees them.

UNMAPPED[head] (C[H_UNMAPPED]) counts the subpages of an allocated large folio that its
owner unmapped while the rest stays mapped: MADV_DONTNEED of part of a PMD-mapped THP
(mm/memory.c zap_pmd_range() -> __split_huge_pmd(), then the PTEs are zapped; mm/rmap.c
page_remove_rmap() -> deferred_split_huge_page()). The kernel frees nothing then: the folio
stays whole on the deferred split queue until its last mapping goes (the whole folio is
freed), or it is split (mm/huge_memory.c __split_huge_page(): "Subpages may be freed if
there wasn't any mapping" -> free_page_and_swap_cache()), by migration or by the deferred
split shrinker (deferred_split_scan(), run only by reclaim's shrink_slab(); shrinkers are
not modelled). The count moves with migration and is cleared when the folio is freed.
Simplification: the unmapped subpages are taken to be the folio's last ones (the kernel's
are the run MADV_DONTNEED covered: the start or the end of the folio).
"""

from cmasim.mm.jit import kjit, kjit_inline
from cmasim.mm.mmzone import (
    H_CPU, H_HANDLE, H_LIVE, H_LIVE_DENSE, H_UNMAPPED, H_LIVE_PAGES, H_NLIVE, H_OOM_LAST_VICTIM, H_OOM_NEXT_TASK,
    HPAGE_PMD_ORDER, OW_TASK_MASK, OW_TASK_SHIFT, PG_ALLOC, VM_THP_SPLIT_PAGE,
    OW_ANON, OW_FILE, OW_FILE_DIRTY, OW_FREE_PENDING, OW_SLAB, OW_SLAB_RECLAIMABLE, OW_KIND_MASK, OW_PIN_MASK, OW_PIN_SHIFT,
    VM_DEFERRED_FREE, VM_RECLAIM_DROPPED_HANDLES,
    NODE_W, F_OWNER,
)
from cmasim.mm.rmqueue import free_pages
from cmasim.mm.freelist import pi_aux, pi_order, pinfo, set_pinfo, vm_add


@kjit_inline
def owner(S, C, p):
    return S[NODE_W * p + F_OWNER]


@kjit_inline
def set_owner(S, C, p, w):
    S[NODE_W * p + F_OWNER] = w


@kjit_inline
def owner_kind(w):
    return w & OW_KIND_MASK


@kjit_inline
def pin_count(w):
    return (w >> OW_PIN_SHIFT) & OW_PIN_MASK


@kjit_inline
def folio_is_movable(w):
    """PageLRU()/__PageMovable(): anonymous and page-cache folios can be migrated."""
    k = w & OW_KIND_MASK
    return k == OW_ANON or k == OW_FILE or k == OW_FILE_DIRTY


@kjit
def default_owner(gfp_mt):
    """The owner a plain allocation gets: anonymous for MOVABLE, slab otherwise."""
    if gfp_mt == 1:
        return OW_ANON
    if gfp_mt == 2:
        return OW_SLAB_RECLAIMABLE
    return OW_SLAB


@kjit_inline
def folio_maybe_dma_pinned(w):
    return ((w >> OW_PIN_SHIFT) & OW_PIN_MASK) > 0


@kjit_inline
def handle_of(S, C, p):
    return S[C[H_HANDLE] + p]


@kjit_inline
def handle_attach(S, C, h, p):
    """Handle h now refers to the block headed by p."""
    S[C[H_LIVE] + h] = p
    S[C[H_HANDLE] + p] = h


@kjit
def handle_move(S, C, old, new):
    """Migration: the handle of `old` follows the data to `new`."""
    h = S[C[H_HANDLE] + old]
    S[C[H_HANDLE] + old] = -1
    S[C[H_HANDLE] + new] = h
    if h >= 0:
        S[C[H_LIVE] + h] = new


NR_OOM_TASKS = 16  # tasks the workload's anonymous memory is divided into (cmasim.mm.oom_kill)


@kjit_inline
def mm_task_assign(C, w):
    """The owner word of a newly faulted block: anonymous memory joins the next task in
    round-robin order, skipping the last OOM victim (see cmasim.mm.oom_kill); other kinds,
    and blocks that already belong to a task, are returned unchanged."""
    if (w & OW_KIND_MASK) != OW_ANON or ((w >> OW_TASK_SHIFT) & OW_TASK_MASK) != 0:
        return w
    t = C[H_OOM_NEXT_TASK] % NR_OOM_TASKS + 1
    if t == C[H_OOM_LAST_VICTIM]:
        t = t % NR_OOM_TASKS + 1
    C[H_OOM_NEXT_TASK] = t
    return w | (t << OW_TASK_SHIFT)


@kjit_inline
def live_add(S, C, p):
    """Dense mode: append block p to LIVE[0:NLIVE]; return its handle. Anonymous memory joins
    a task (mm_task_assign)."""
    return live_add_owned(S, C, p, S[NODE_W * p + F_OWNER], pi_order(pinfo(S, C, p)))


@kjit_inline
def live_add_owned(S, C, p, w, order):
    """`live_add` of a block of `order` whose owner word is to be `w` (before the task
    assignment): the caller knows both, so neither the owner word nor the page word is read
    back (each a cache miss on a random page in churn; for speed)."""
    S[NODE_W * p + F_OWNER] = mm_task_assign(C, w)
    h = C[H_NLIVE]
    handle_attach(S, C, h, p)
    C[H_NLIVE] = h + 1
    C[H_LIVE_PAGES] += 1 << order
    return h


@kjit_inline
def handle_drop(S, C, p):
    """Forget the handle of block p (its owner freed it, or reclaim took it away)."""
    h = S[C[H_HANDLE] + p]
    if h < 0:
        return
    handle_drop_at(S, C, p, h)


@kjit_inline
def handle_drop_at(S, C, p, h):
    """`handle_drop` of block p whose handle h >= 0 the caller knows (it read p from LIVE[h]),
    so HANDLE[p] is not read (a cache miss on a random page per churn free; for speed)."""
    S[C[H_HANDLE] + p] = -1
    C[H_LIVE_PAGES] -= 1 << pi_order(pinfo(S, C, p))
    live = C[H_LIVE]
    if C[H_LIVE_DENSE]:
        last = C[H_NLIVE] - 1
        q = S[live + last]
        S[live + h] = q
        if q >= 0 and h != last:
            S[C[H_HANDLE] + q] = h
        S[live + last] = -1
        C[H_NLIVE] = last
    else:
        S[live + h] = -1


@kjit_inline
def release_block(S, C, cpu, p):
    """Free an unpinned allocated block and clear its owner word (and unmapped count)."""
    S[NODE_W * p + F_OWNER] = 0
    S[C[H_UNMAPPED] + p] = 0
    S[C[H_HANDLE] + p] = -1
    return free_pages(S, C, cpu, p)


@kjit_inline
def folio_put(S, C, cpu, p):
    """The owner drops its reference: free now, or at unpin if the block is pinned."""
    handle_drop(S, C, p)
    return folio_put_unhandled(S, C, cpu, p)


@kjit_inline
def folio_put_live(S, C, cpu, p, h):
    """`folio_put` of the block p = LIVE[h] (the caller read it from the live table: churn's
    free), without reading HANDLE[p] back (`handle_drop_at`; for speed)."""
    handle_drop_at(S, C, p, h)
    return folio_put_unhandled(S, C, cpu, p)


@kjit_inline
def folio_put_unhandled(S, C, cpu, p):
    """The rest of `folio_put` once the handle is dropped."""
    w = S[NODE_W * p + F_OWNER]
    if folio_maybe_dma_pinned(w):
        S[NODE_W * p + F_OWNER] = w | OW_FREE_PENDING
        vm_add(C, VM_DEFERRED_FREE, 1)
        return 0
    return release_block(S, C, cpu, p)


@kjit
def reclaim_take(S, C, cpu, p):
    """Reclaim takes a block away from its owner (swap-out or drop) and frees it."""
    if S[C[H_HANDLE] + p] >= 0:
        vm_add(C, VM_RECLAIM_DROPPED_HANDLES, 1)
    handle_drop(S, C, p)
    return release_block(S, C, cpu, p)


@kjit
def split_folio(S, C, p):
    """split_huge_page(): the unpinned allocated block headed by p becomes 2^order order-0
    allocated pages, each with p's owner word (pin count 0); the subpages its owner had
    unmapped (UNMAPPED[p], the last ones) are freed (__split_huge_page():
    free_page_and_swap_cache() of every subpage without a mapping). Counts thp_split_page for
    a PMD-sized folio. Returns the number of pages still allocated."""
    w = pinfo(S, C, p)
    order = pi_order(w)
    nr = 1 << order
    if order == 0:
        return 1
    aux = pi_aux(w)
    ow = S[NODE_W * p + F_OWNER]
    h = S[C[H_HANDLE] + p]
    unmapped = S[C[H_UNMAPPED] + p]
    S[C[H_UNMAPPED] + p] = 0
    mapped = nr - unmapped
    for q in range(p, p + nr):
        set_pinfo(S, C, q, 0, PG_ALLOC, aux, 0)
        S[NODE_W * q + F_OWNER] = ow
        if q != p:
            S[C[H_HANDLE] + q] = -1
    if h >= 0:
        C[H_LIVE_PAGES] -= nr - 1
        if C[H_LIVE_DENSE]:
            for q in range(p + 1, p + mapped):
                live_add(S, C, q)
    for q in range(p + mapped, p + nr):
        release_block(S, C, C[H_CPU], q)
    if order == HPAGE_PMD_ORDER:
        vm_add(C, VM_THP_SPLIT_PAGE, 1)
    return mapped
