"""Page migration: move an allocated block's contents to a new block.

Kernel: mm/migrate.c migrate_pages()/migrate_pages_batch()/migrate_pages_sync()/
migrate_folio_unmap()/migrate_folio_move()/__folio_migrate_mapping()/try_split_folio(),
alloc_migration_target(); include/trace/events/migrate.h.

A block can migrate when its owner is movable (anonymous or page cache) and it is not
pinned: folio_migrate_mapping() cannot freeze the reference count of a pinned page and
returns -EAGAIN on every pass. The target is a normal allocation with the caller's GFP
mask (MOVABLE for alloc_contig_range, so it may land in another CMA block but never in an
isolated one; without __GFP_MOVABLE for FOLL_LONGTERM, so never in CMA). Each migrated
base page costs T_MIGRATE_COST_NS of simulated time; each failed pass a quarter of it.

Passes: up to NR_MAX_MIGRATE_PAGES_RETRY (10) over the list while something returns
-EAGAIN (6.3+: 3 async passes over the batch, then 7 sync passes per folio; same outcome
here). The first -ENOMEM of a small folio ends the pass and the call at once ("when memory
is low, don't bother to try to migrate other folios", migrate_pages_batch()).

Large folios whose target cannot be allocated are split (try_split_folio() ->
split_folio()) and their base pages migrated after the rest of the list: 6.3+ gives them
one MIGRATE_ASYNC pass ("minimal effort", migrate_pages()), failures go back to the
caller's list (alloc_contig_range() retries them in its remaining tries); an -ENOMEM in that
pass only ends the pass. 6.1 runs the split pages through a full set of 10 passes and
returns -ENOMEM on an -ENOMEM. A split that fails (-EAGAIN: extra references, folio lock)
is -ENOMEM for the call, except for MR_LONGTERM_PIN, which retries it in the next pass.

Transient failures: besides pins, a kernel migration attempt fails with -EAGAIN when the
folio has extra references (a page-cache lookup or FOLL_GET in flight, the swap cache, an
lru_add batch on another CPU outside lru_cache_disable()), is under writeback (waited for
only in SYNC modes), or its folio/anon_vma lock is held (trylock in ASYNC). The sim folds
these into one optional probability per attempt, T_MIGRATE_EAGAIN_PPM (scenario key
`migration.transient_eagain`, default 0), drawn from the core's PRNG; it also applies to the
split attempt (can_split_folio() fails on extra references).

Simplifications: the THP target uses the caller's base-page gfp (the kernel uses
GFP_TRANSHUGE without kswapd, R35); splitting costs no simulated time; hugetlb is absent.
"""

from cmasim.mm.jit import kjit, kjit_inline
from cmasim.mm.mmzone import (
    H_COST_NS, H_PARAM, H_UNMAPPED, HPAGE_PMD_ORDER, VM_THP_MIGRATION_SUCCESS, MR_LONGTERM_PIN, OW_AREA_SHIFT, OW_KIND_MASK, PG_ALLOC, T_MIGRATE_COST_NS,
    T_MIGRATE_FAIL_COST_NS, T_THP_COST_PPM,
    T_MIGRATE_EAGAIN_PPM, TR_MM_MIGRATE_PAGES, VM_MIGRATE_TRANSIENT, VM_PGMIGRATE_FAIL, VM_PGMIGRATE_SUCCESS,
    NODE_W, F_OWNER,
)
from cmasim.mm.alloc_pages import alloc_pages
from cmasim.mm.folio import folio_is_movable, folio_maybe_dma_pinned, handle_move, release_block, split_folio
from cmasim.mm.freelist import pi_order, pi_state, pinfo, policy_version, trace_emit, vm_add
from cmasim.mm.prandom import prandom_u32

EAGAIN = -11
ENOMEM = -12
EBUSY = -16
EINVAL = -22
EFAULT = -14
EGONE = -1000  # the folio was freed from under us while it waited on the list: done, not failed
NR_MAX_MIGRATE_PAGES_RETRY = 10
SPLIT = -2  # pfns[cap + i] of an entry whose large folio was split (its pages were appended)


@kjit
def migrate_cost(C, pages):
    """Simulated cost of moving one folio of `pages` base pages: T_MIGRATE_COST_NS per base
    page, scaled by T_THP_COST_PPM for large folios (one copy and one unmap/remap per folio:
    the kernel's THP migration costs about 0.43x per byte of 4 KiB migration)."""
    c = C[C[H_PARAM] + T_MIGRATE_COST_NS] * pages
    if pages > 1:
        c = c * C[C[H_PARAM] + T_THP_COST_PPM] // 1_000_000
    C[H_COST_NS] += c


@kjit
def transient_eagain(C):
    """A transient -EAGAIN (extra reference, writeback, lock) with probability
    T_MIGRATE_EAGAIN_PPM per million; draws from the PRNG only when the rate is set."""
    ppm = C[C[H_PARAM] + T_MIGRATE_EAGAIN_PPM]
    if ppm <= 0:
        return False
    if prandom_u32(C) % 1_000_000 < ppm:
        vm_add(C, VM_MIGRATE_TRANSIENT, 1)
        return True
    return False


@kjit_inline
def migrate_folio(S, C, cpu, src, gfp):
    """Move one allocated block; returns the new head pfn, EGONE, EAGAIN (pinned, not movable,
    transient) or ENOMEM (no target).
    Inlined into its callers (kjit_inline): not compiled as a library of its own, which would
    generate its whole call tree once more in a cold compile (docs/performance.md)."""
    w = pinfo(S, C, src)
    if pi_state(w) != PG_ALLOC:
        # migrate_folio_unmap(): "Folio was freed from under us. So we are done." (its owner
        # freed it at unpin, or reclaim took it, while simulated time passed).
        return EGONE
    ow = S[NODE_W * src + F_OWNER]
    if not folio_is_movable(ow) or folio_maybe_dma_pinned(ow) or transient_eagain(C):
        C[H_COST_NS] += C[C[H_PARAM] + T_MIGRATE_FAIL_COST_NS]
        return EAGAIN
    order = pi_order(w)
    new = alloc_pages(S, C, cpu, order, gfp)
    if new < 0:
        return ENOMEM
    S[NODE_W * new + F_OWNER] = ow & (OW_KIND_MASK | (0x3F << OW_AREA_SHIFT))
    S[C[H_UNMAPPED] + new] = S[C[H_UNMAPPED] + src]  # a partly unmapped folio is copied whole
    handle_move(S, C, src, new)
    release_block(S, C, cpu, src)
    migrate_cost(C, 1 << order)
    if order == HPAGE_PMD_ORDER:
        vm_add(C, VM_THP_MIGRATION_SUCCESS, 1)
    return new


@kjit
def try_split_folio(S, C, p):
    """try_split_folio(): 0 when the large folio at p was split, EAGAIN when it could not be
    (a transient extra reference or lock; pins never reach here, they fail before the target
    allocation)."""
    if transient_eagain(C):
        return EAGAIN
    split_folio(S, C, p)
    return 0


MIG_DONE = 0  # migrated, or freed from under us
MIG_RETRY = 1  # -EAGAIN: stays on the list for the next pass
MIG_NOMEM = 2  # -ENOMEM: ends the call
MIG_SPLIT = 3  # large folio split; its base pages were appended to the list


@kjit_inline
def migrate_entry(S, C, cpu, pfns, i, n, gfp, reason):
    """One migrate_pages_batch() step on list entry i (first round): migrate, or on -ENOMEM
    split a large folio (appending its pages at pfns[n:]). Returns (pages migrated, MIG_*, n).
    Inlined into its callers (kjit_inline): not compiled as a library of its own, which would
    generate its whole call tree once more in a cold compile (docs/performance.md)."""
    cap = pfns.shape[0] // 2
    p = pfns[i]
    r = migrate_folio(S, C, cpu, p, gfp)
    if r >= 0:
        pfns[i] = -1
        pfns[cap + i] = r
        return 1 << pi_order(pinfo(S, C, r)), MIG_DONE, n
    if r == EGONE:
        pfns[i] = -1
        pfns[cap + i] = -1
        return 0, MIG_DONE, n
    if r == EAGAIN:
        return 0, MIG_RETRY, n
    order = pi_order(pinfo(S, C, p))
    if order > 0 and n + (1 << order) <= cap:
        if try_split_folio(S, C, p) == 0:
            for k in range(1 << order):
                pfns[n + k] = p + k
                pfns[cap + n + k] = -1
            pfns[i] = -1
            pfns[cap + i] = SPLIT
            return 0, MIG_SPLIT, n + (1 << order)
        if reason == MR_LONGTERM_PIN:
            return 0, MIG_RETRY, n  # "Try again to split large folio to mitigate the failure"
    return 0, MIG_NOMEM, n


@kjit_inline
def migrate_split_entry(S, C, cpu, pfns, i, gfp):
    """One attempt on a split base page (no further splitting). Returns (pages, MIG_*).
    Inlined into its callers (kjit_inline): not compiled as a library of its own, which would
    generate its whole call tree once more in a cold compile (docs/performance.md)."""
    cap = pfns.shape[0] // 2
    r = migrate_folio(S, C, cpu, pfns[i], gfp)
    if r >= 0:
        pfns[i] = -1
        pfns[cap + i] = r
        return 1, MIG_DONE
    if r == EGONE:
        pfns[i] = -1
        pfns[cap + i] = -1
        return 0, MIG_DONE
    if r == EAGAIN:
        return 0, MIG_RETRY
    return 0, MIG_NOMEM


@kjit
def split_passes(C):
    """6.3+: split folios get one MIGRATE_ASYNC pass; 6.1: the full retry passes."""
    return 1 if policy_version(C) >= 603 else NR_MAX_MIGRATE_PAGES_RETRY


@kjit
def migrate_pages_account(S, C, pfns, n, ok_pages, mode, reason):
    """Count the leftovers as failed, update pgmigrate_*, emit mm_migrate_pages; returns the
    failed pages."""
    failed_pages = 0
    for i in range(n):
        if pfns[i] >= 0:
            failed_pages += 1 << pi_order(pinfo(S, C, pfns[i]))
    vm_add(C, VM_PGMIGRATE_SUCCESS, ok_pages)
    vm_add(C, VM_PGMIGRATE_FAIL, failed_pages)
    trace_emit(C, TR_MM_MIGRATE_PAGES, 0, ok_pages, failed_pages, mode, reason, 0, 0)
    return failed_pages


@kjit_inline
def migrate_pages(S, C, cpu, pfns, n, gfp, mode, reason):
    """migrate_pages(): try each listed block (up to 10 passes while some fail with -EAGAIN).

    `pfns` holds the list in pfns[0:n] and has room for `cap = len(pfns) // 2` entries; a
    migrated entry is set to -1 and its new head pfn stored in pfns[cap + i]. A split large
    folio's entry becomes -1 with pfns[cap + i] = SPLIT, and its base pages are appended as
    entries n, n+1, ... (head first); failures stay. Returns (nr_succeeded pages, nr_failed
    pages, hit ENOMEM, new n). Emits mm_migrate_pages. No simulated time passes inside (the
    caller may be a timer callback); alloc_contig_range() uses a timed copy of this loop
    (cmasim.mm.alloc_contig.migrate_pages_timed). Inlined into its one compiled caller,
    pin_user_page() (kjit_inline): not compiled as a library of its own, which would generate
    its whole call tree once more in a cold compile (docs/performance.md).
    """
    n_in = n
    ok_pages = 0
    nomem = False
    for _ in range(NR_MAX_MIGRATE_PAGES_RETRY):
        retry = False
        for i in range(n_in):
            if pfns[i] < 0:
                continue
            ok, code, n = migrate_entry(S, C, cpu, pfns, i, n, gfp, reason)
            ok_pages += ok
            if code == MIG_RETRY:
                retry = True
            elif code == MIG_NOMEM:
                nomem = True
                break
        if not retry or nomem:
            break
    if not nomem and n > n_in:
        for _ in range(split_passes(C)):
            retry = False
            stop = False
            for i in range(n_in, n):
                if pfns[i] < 0:
                    continue
                ok, code = migrate_split_entry(S, C, cpu, pfns, i, gfp)
                ok_pages += ok
                if code == MIG_RETRY:
                    retry = True
                elif code == MIG_NOMEM:
                    stop = True
                    nomem = policy_version(C) < 603
                    break
            if stop or not retry:
                break
    failed_pages = migrate_pages_account(S, C, pfns, n, ok_pages, mode, reason)
    return ok_pages, failed_pages, nomem, n
