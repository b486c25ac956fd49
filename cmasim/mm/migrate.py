"""Page migration: move an allocated block's contents to a new block.

Kernel: mm/migrate.c migrate_pages()/migrate_folio_move()/folio_migrate_mapping(),
mm/page_alloc.c alloc_migration_target() path, include/trace/events/migrate.h.

A block can migrate when its owner is movable (anonymous or page cache) and it is not
pinned: folio_migrate_mapping() cannot freeze the reference count of a pinned page and
returns -EAGAIN on every pass. The target is a normal allocation with the caller's GFP
mask (MOVABLE for alloc_contig_range, so it may land in another CMA block but never in an
isolated one; without __GFP_MOVABLE for FOLL_LONGTERM, so never in CMA). Each migrated
base page costs T_MIGRATE_COST_NS of simulated time; each failed pass a quarter of it.

Simplification: a THP whose order-9 target cannot be allocated fails instead of being
split (thp_migration_split is not modelled).
"""

from cmasim.mm.jit import kjit
from cmasim.mm.mmzone import (
    H_COST_NS, H_OWNER, H_PARAM, OW_AREA_SHIFT, OW_KIND_MASK, PG_ALLOC, T_MIGRATE_COST_NS,
    TR_MM_MIGRATE_PAGES, VM_PGMIGRATE_FAIL, VM_PGMIGRATE_SUCCESS,
)
from cmasim.mm.alloc_pages import alloc_pages
from cmasim.mm.folio import folio_is_movable, folio_maybe_dma_pinned, handle_move, release_block
from cmasim.mm.freelist import pi_order, pi_state, pinfo, trace_emit, vm_add

EAGAIN = -11
ENOMEM = -12
EBUSY = -16
EINVAL = -22
EFAULT = -14
EGONE = -1000  # the folio was freed from under us while it waited on the list: done, not failed
NR_MAX_MIGRATE_PAGES_RETRY = 10


@kjit
def migrate_cost(C, pages):
    C[H_COST_NS] += C[C[H_PARAM] + T_MIGRATE_COST_NS] * pages


@kjit
def migrate_folio(S, C, cpu, src, gfp):
    """Move one allocated block; returns the new head pfn, EAGAIN (pinned / not movable) or ENOMEM."""
    w = pinfo(S, C, src)
    if pi_state(w) != PG_ALLOC:
        # migrate_folio_unmap(): "Folio was freed from under us. So we are done." (its owner
        # freed it at unpin, or reclaim took it, while simulated time passed).
        return EGONE
    ow = S[C[H_OWNER] + src]
    if not folio_is_movable(ow) or folio_maybe_dma_pinned(ow):
        C[H_COST_NS] += NR_MAX_MIGRATE_PAGES_RETRY * C[C[H_PARAM] + T_MIGRATE_COST_NS] // 4
        return EAGAIN
    order = pi_order(w)
    new = alloc_pages(S, C, cpu, order, gfp)
    if new < 0:
        return ENOMEM
    S[C[H_OWNER] + new] = ow & (OW_KIND_MASK | (0x3F << OW_AREA_SHIFT))
    handle_move(S, C, src, new)
    release_block(S, C, cpu, src)
    migrate_cost(C, 1 << order)
    return new


@kjit
def migrate_pages(S, C, cpu, pfns, n, gfp, mode, reason):
    """migrate_pages(): try each listed block (up to 10 passes while some fail with -EAGAIN).

    `pfns[0:n]` is the list (pfns must hold 2n slots); a migrated entry is set to -1 and its
    new head pfn stored in pfns[n + i]; failures stay. Returns
    (nr_succeeded pages, nr_failed pages, hit ENOMEM). Emits mm_migrate_pages.
    """
    ok_pages = 0
    failed_pages = 0
    nomem = False
    for _ in range(NR_MAX_MIGRATE_PAGES_RETRY):
        retry = False
        for i in range(n):
            p = pfns[i]
            if p < 0:
                continue
            r = migrate_folio(S, C, cpu, p, gfp)
            if r >= 0:
                ok_pages += 1 << pi_order(pinfo(S, C, r))
                pfns[i] = -1
                pfns[n + i] = r
            elif r == EGONE:
                pfns[i] = -1
                pfns[n + i] = -1
            elif r == EAGAIN:
                retry = True
            elif r == ENOMEM:
                nomem = True
        if not retry or nomem:
            break
    for i in range(n):
        if pfns[i] >= 0:
            failed_pages += 1 << pi_order(pinfo(S, C, pfns[i]))
    vm_add(C, VM_PGMIGRATE_SUCCESS, ok_pages)
    vm_add(C, VM_PGMIGRATE_FAIL, failed_pages)
    trace_emit(C, TR_MM_MIGRATE_PAGES, 0, ok_pages, failed_pages, mode, reason, 0, 0)
    return ok_pages, failed_pages, nomem
