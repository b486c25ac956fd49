"""Page pinning: pin_user_pages() with and without FOLL_LONGTERM, and unpinning.

Kernel: mm/gup.c — __gup_longterm_locked(), check_and_migrate_movable_pages(),
folio_is_longterm_pinnable(), migrate_longterm_unpinnable_folios(); unpin_user_page().

* Short-term pins (O_DIRECT, most DMA) are allowed on CMA pages; the page cannot migrate
  until the pin ends (a timer on the simulated clock).
* FOLL_LONGTERM: a page in a CMA or isolated pageblock (or ZONE_MOVABLE) is first migrated
  to a new page allocated without __GFP_MOVABLE (PF_MEMALLOC_PIN strips it), so never in
  CMA; if that migration fails the pin fails with -ENOMEM. The `PL_LONGTERM_MIGRATE` policy
  switch turns this off to model the bug David Hildenbrand mentions (long-term pins left
  on CMA).
* Pinning a free page is an error (-EFAULT): there is nothing mapped to pin.
* Candidate fixes (policy switches): `PL_SHORT_PIN_MIGRATES_CMA` — a short-term pin of a
  page in a CMA pageblock first migrates it out of CMA like FOLL_LONGTERM (if that fails
  the page is pinned where it is); `PL_PIN_ISOLATED_MIGRATE` — a short-term pin of a page
  in an isolated pageblock (an alloc_contig_range() in progress) first migrates it, so the
  pinner gets the migrated page; if that fails the pin is refused (-EAGAIN, the pinner
  retries).
* A pinned page freed by its owner is released at unpin (see cmasim.mm.folio).
"""

import numpy as np

from cmasim.mm.jit import kjit, kjit_inline
from cmasim.mm.mmzone import (
    GFP_DIRECT_RECLAIM_, GFP_FS_, GFP_HARDWALL_, GFP_IO_, GFP_KSWAPD_RECLAIM_, GFP_MOVABLE_, GFP_NOWARN_,
    PL_PIN_ISOLATED_MIGRATE, PL_SHORT_PIN_MIGRATES_CMA, VM_PIN_REFUSED_ISOLATED, VM_SHORT_PIN_MIGRATED,
    H_NOW, H_POL, MIGRATE_CMA, MIGRATE_ISOLATE, OW_FREE_PENDING, OW_LONGTERM, OW_PIN_MASK,
    OW_PIN_SHIFT, PG_ALLOC, TIMER_UNPIN, PL_LONGTERM_MIGRATE, VM_LONGTERM_PIN_ON_CMA, VM_PIN_FAIL, VM_PIN_LONGTERM,
    VM_PIN_MIGRATED, VM_PIN_SHORT, VM_UNPIN, ZONE_MOVABLE, Z_IDX, MIGRATE_SYNC, MR_LONGTERM_PIN,
    NODE_W, F_OWNER,
)
from cmasim.mm.folio import folio_is_movable, release_block
from cmasim.mm.freelist import get_pageblock_type_bits, get_pfnblock_migratetype, pageblock_zone, pi_order, pi_state, pinfo, vm_add, zone_base
from cmasim.mm.migrate import EAGAIN, EFAULT, ENOMEM, SPLIT, migrate_pages
from cmasim.mm.timers import timer_push

GFP_USER_NOWARN = GFP_DIRECT_RECLAIM_ | GFP_KSWAPD_RECLAIM_ | GFP_IO_ | GFP_FS_ | GFP_HARDWALL_ | GFP_NOWARN_
GFP_USER_MOVABLE = GFP_USER_NOWARN | GFP_MOVABLE_
# Why pin_user_page() migrates the page first (none, FOLL_LONGTERM, the two policy switches).
PIN_NO_MIGRATE = 0
PIN_LONGTERM = 1
PIN_ISOLATED = 2
PIN_SHORT_CMA = 3


@kjit
def folio_is_longterm_pinnable(S, C, p):
    """folio_is_longterm_pinnable(): not in a CMA or isolated pageblock, not in ZONE_MOVABLE."""
    mt = get_pfnblock_migratetype(S, C, p)
    if mt == MIGRATE_CMA or mt == MIGRATE_ISOLATE:
        return False
    return C[zone_base(C, pageblock_zone(S, C, p)) + Z_IDX] != ZONE_MOVABLE


@kjit
def migration_list(S, C, p):
    """A one-folio migration list for block p, with room for its base pages should
    migrate_pages() split it (pfns[0:cap] entries, pfns[cap:] new heads)."""
    cap = 1 + (1 << pi_order(pinfo(S, C, p)))
    lst = np.full(2 * cap, -1, dtype=np.int64)
    lst[0] = p
    return lst


@kjit
def migrated_head(lst):
    """Where the pinned page's data went: the new head of entry 0, or of its head page when
    the folio was split (the first appended entry); -1 if that page did not move."""
    cap = lst.shape[0] // 2
    if lst[0] >= 0:
        return -1
    if lst[cap] == SPLIT:
        return lst[cap + 1] if lst[1] < 0 else -1
    return lst[cap]


@kjit_inline
def pin_user_page(S, C, cpu, p, longterm, duration_ns, pfns, tag):
    """Pin the allocated block headed by p for duration_ns; returns the pinned pfn or -errno.

    `pfns` is a scratch int64 array of length >= 2 (the one-entry migration list); `tag`
    rides on the unpin timer (the pinner that owns the pin, +1; 0 for none).

    The three cases that migrate the page first (FOLL_LONGTERM off CMA, and the two policy
    switches of the module docstring) share one migrate_pages() call: it is inlined, so each
    call site would be another copy of the migration code to compile (docs/performance.md).
    Inlined into its one compiled caller, the pinner thread (kjit_inline): not compiled as a
    library of its own, which would generate its whole call tree once more in a cold compile;
    `Machine.pin()` from Python compiles it on first use.
    """
    if p < 0 or pi_state(pinfo(S, C, p)) != PG_ALLOC:
        vm_add(C, VM_PIN_FAIL, 1)
        return EFAULT
    why = PIN_NO_MIGRATE
    if longterm and not folio_is_longterm_pinnable(S, C, p):
        if C[C[H_POL] + PL_LONGTERM_MIGRATE] and folio_is_movable(S[NODE_W * p + F_OWNER]):
            why = PIN_LONGTERM
        else:
            vm_add(C, VM_LONGTERM_PIN_ON_CMA, 1)
    elif not longterm and folio_is_movable(S[NODE_W * p + F_OWNER]):
        pol = C[H_POL]
        mt = get_pfnblock_migratetype(S, C, p)
        if mt == MIGRATE_ISOLATE and C[pol + PL_PIN_ISOLATED_MIGRATE]:
            why = PIN_ISOLATED
        elif C[pol + PL_SHORT_PIN_MIGRATES_CMA] and (mt == MIGRATE_CMA or (mt == MIGRATE_ISOLATE and
                                                       get_pageblock_type_bits(S, C, p) == MIGRATE_CMA)):
            why = PIN_SHORT_CMA
    if why != PIN_NO_MIGRATE:
        lst = migration_list(S, C, p)
        ok, failed, nomem, n = migrate_pages(S, C, cpu, lst, 1,
                                             GFP_USER_MOVABLE if why == PIN_ISOLATED else GFP_USER_NOWARN,
                                             MIGRATE_SYNC, MR_LONGTERM_PIN)
        p2 = migrated_head(lst)
        if why == PIN_LONGTERM:
            if failed or nomem or ok == 0 or p2 < 0:
                vm_add(C, VM_PIN_FAIL, 1)
                return ENOMEM
            p = p2  # the data moved: pin the new page (the head page's new home after a split)
            vm_add(C, VM_PIN_MIGRATED, ok)
        elif why == PIN_ISOLATED:
            if ok == 0 or p2 < 0:
                vm_add(C, VM_PIN_REFUSED_ISOLATED, 1)
                return EAGAIN
            p = p2
            vm_add(C, VM_SHORT_PIN_MIGRATED, 1)
        elif p2 >= 0:
            p = p2
            vm_add(C, VM_SHORT_PIN_MIGRATED, 1)
    w = S[NODE_W * p + F_OWNER]
    cnt = (w >> OW_PIN_SHIFT) & OW_PIN_MASK
    if cnt == OW_PIN_MASK:
        vm_add(C, VM_PIN_FAIL, 1)
        return ENOMEM
    w = (w & ~(OW_PIN_MASK << OW_PIN_SHIFT)) | ((cnt + 1) << OW_PIN_SHIFT)
    if longterm:
        w |= OW_LONGTERM
        vm_add(C, VM_PIN_LONGTERM, 1)
    else:
        vm_add(C, VM_PIN_SHORT, 1)
    S[NODE_W * p + F_OWNER] = w
    if not timer_push(C, C[H_NOW] + duration_ns, (TIMER_UNPIN << 56) | (tag << 32) | p):
        # No room for the expiry: undo the pin rather than leave it forever (the loss is counted).
        S[NODE_W * p + F_OWNER] = w - (1 << OW_PIN_SHIFT)
        return ENOMEM
    return p


@kjit
def unpin_user_page(S, C, cpu, p):
    """unpin_user_page(): drop one pin; release the block if its owner already freed it."""
    w = S[NODE_W * p + F_OWNER]
    cnt = (w >> OW_PIN_SHIFT) & OW_PIN_MASK
    if cnt == 0:
        return
    cnt -= 1
    w = (w & ~(OW_PIN_MASK << OW_PIN_SHIFT)) | (cnt << OW_PIN_SHIFT)
    if cnt == 0:
        w &= ~OW_LONGTERM
    S[NODE_W * p + F_OWNER] = w
    vm_add(C, VM_UNPIN, 1)
    if cnt == 0 and (w & OW_FREE_PENDING):
        release_block(S, C, cpu, p)
