"""The allocation slow path (cmasim/mm/alloc_pages.py): retry/give-up rules, OOM exclusions,
drain after reclaim. Kernel: mm/page_alloc.c __alloc_pages_slowpath(), should_reclaim_retry(),
__alloc_pages_may_oom(), __alloc_pages_direct_reclaim() (v6.18)."""

import pytest

from cmasim import gfp as G
from cmasim.machine import Machine, MachineConfig
from cmasim.mm import mmzone as mz
from cmasim.mm.alloc_pages import MAX_RECLAIM_RETRIES
from cmasim.policy import get_policy

B = G.BITS
NORMAL = mz.ZONE_NORMAL


def pinned_page_cache_machine(reclaim=True, oom_killer=False):
    """One Normal zone filled with page cache that is all pinned: reclaimable by the kernel's
    count (the pages sit on the file LRU) but nothing can actually be reclaimed."""
    m = Machine(MachineConfig(zones=[("Normal", 4096)], nr_cpus=1, min_free_kbytes=128, compaction=False,
                              reclaim=reclaim, oom_killer=oom_killer, swap_bytes=0, timer_capacity=8192),
                get_policy("linux-6.18"))
    while True:
        p = m.alloc(0, G.GFP_KERNEL | B["__GFP_NORETRY"], owner=mz.OW_FILE)
        if p < 0:
            break
        assert m.pin(p, duration_ns=10**12) == p
    for k in range(mz.NR_VM):
        m.C[int(m.C[mz.H_VM]) + k] = 0
    return m


def allocstall(m):
    return sum(m.vm(mz.VM_ALLOCSTALL + i) for i in range(4))


def test_reclaim_retries_until_max_reclaim_retries_rounds_without_progress():
    """should_reclaim_retry(): pinned page cache counts as reclaimable, so the zone would pass
    its MIN mark "if everything reclaimable were freed"; the request retries until
    no_progress_loops > MAX_RECLAIM_RETRIES (17 reclaim rounds, each an ALLOCSTALL), then
    goes OOM. The old model gave up after 2 rounds and counted one allocstall."""
    m = pinned_page_cache_machine()
    assert m.alloc(0, G.GFP_KERNEL) < 0
    assert allocstall(m) == MAX_RECLAIM_RETRIES + 1
    assert m.vm(mz.VM_ALLOCSTALL + NORMAL) == MAX_RECLAIM_RETRIES + 1
    assert m.vm(mz.VM_PGSTEAL_DIRECT) == 0 and m.vm(mz.VM_PGSCAN_DIRECT) > 0
    assert m.vm(mz.VM_OOM_KILL) == 1  # killer off: counted, the allocation fails
    m.check()


def test_nothing_reclaimable_goes_oom_after_one_round():
    """With no reclaimable page the zone test fails at once: one reclaim round, then OOM."""
    m = pinned_page_cache_machine(reclaim=False)
    assert m.alloc(0, G.GFP_KERNEL) < 0
    assert allocstall(m) == 1 and m.vm(mz.VM_OOM_KILL) == 1


@pytest.mark.parametrize("order, gfp", [
    (0, G.GFP_KERNEL | B["__GFP_RETRY_MAYFAIL"]),
    (0, G.GFP_KERNEL | B["__GFP_NORETRY"]),
    (0, G.GFP_KERNEL | B["__GFP_THISNODE"]),
    (4, G.GFP_KERNEL),
    (0, G.GFP_KERNEL | B["__GFP_DMA32"]),
], ids=["retry_mayfail", "noretry", "thisnode", "costly", "lowmem"])
def test_no_oom_kill_where_the_kernel_never_kills(order, gfp):
    """__alloc_pages_may_oom(): no OOM for costly orders, __GFP_RETRY_MAYFAIL/__GFP_THISNODE,
    highest zone below Normal; __GFP_NORETRY leaves before it. The old model counted oom_kill
    for every failed order <= 3 request."""
    m = Machine(MachineConfig(zones=[("DMA32", 2048), ("Normal", 2048)], nr_cpus=1, min_free_kbytes=128,
                              compaction=False, reclaim=False), get_policy("linux-6.18"))
    while m.alloc(0, G.GFP_KERNEL | B["__GFP_NORETRY"]) >= 0:
        pass
    m.drain_all()
    while m.alloc(0, G.GFP_KERNEL | B["__GFP_NORETRY"]) >= 0:
        pass
    before = m.vm(mz.VM_ALLOC_FAIL)
    assert m.alloc(order, gfp) < 0
    assert m.vm(mz.VM_ALLOC_FAIL) == before + 1
    assert m.vm(mz.VM_OOM_KILL) == 0
    assert m.alloc(0, G.GFP_KERNEL) < 0 and m.vm(mz.VM_OOM_KILL) == 1  # the plain request does go OOM


def test_noretry_leaves_after_one_reclaim_round():
    m = pinned_page_cache_machine()
    assert m.alloc(0, G.GFP_KERNEL | B["__GFP_NORETRY"]) < 0
    assert allocstall(m) == 1 and m.vm(mz.VM_OOM_KILL) == 0


def test_no_drain_after_reclaim_without_progress():
    """__alloc_pages_direct_reclaim(): `if (!*did_some_progress) goto out;` — the per-CPU
    lists are drained only after a round that reclaimed something. The old model drained once
    per slow path regardless."""
    m = pinned_page_cache_machine()
    assert m.alloc(0, G.GFP_KERNEL) < 0
    assert allocstall(m) == MAX_RECLAIM_RETRIES + 1
    assert m.vm(mz.VM_DRAIN_ALL) == 0


def test_drain_after_each_reclaim_round_with_progress():
    """Atomic page-cache allocations take free memory well below MIN; a GFP_KERNEL request then
    needs several reclaim rounds of SWAP_CLUSTER_MAX pages. Every round that reclaimed but
    still could not allocate drains the per-CPU lists once (the old model drained once per
    slow path)."""
    m = Machine(MachineConfig(zones=[("Normal", 8192)], nr_cpus=1, min_free_kbytes=1024, compaction=False,
                              swap_bytes=0), get_policy("linux-6.18"))
    while m.alloc(0, G.GFP_ATOMIC, owner=mz.OW_FILE) >= 0:
        pass
    assert m.zone_field(0, mz.Z_NR_FREE) < m.zone_field(0, mz.Z_WMARK_MIN) // 2
    for k in range(mz.NR_VM):
        m.C[int(m.C[mz.H_VM]) + k] = 0
    assert m.alloc(0, G.GFP_KERNEL) >= 0
    rounds = allocstall(m)
    assert rounds >= 3
    assert m.vm(mz.VM_PGSTEAL_DIRECT) >= 32 * (rounds - 1)
    assert rounds - 1 <= m.vm(mz.VM_DRAIN_ALL) <= rounds
    m.check()


# --- W9: vm.defrag_mode ------------------------------------------------------------------------
def defrag_machine(defrag_mode, policy="linux-6.18"):
    """DMA32 + Normal, every pageblock partly used by movable pages: a non-movable request can
    only be served by stealing from a movable block."""
    m = Machine(MachineConfig(zones=[("DMA32", 4096), ("Normal", 4096)], nr_cpus=1, min_free_kbytes=128,
                              reclaim=False, compaction=False, defrag_mode=defrag_mode), get_policy(policy))
    pages = []
    while True:
        p = m.alloc(0, G.GFP_HIGHUSER_MOVABLE | B["__GFP_NORETRY"])
        if p < 0:
            break
        pages.append(p)
    m.drain_all()
    for p in pages:
        if p % 2 == 0:
            m.free(p)
    m.drain_all()
    for k in range(mz.NR_VM):
        m.C[int(m.C[mz.H_VM]) + k] = 0
    m.C[mz.H_KSWAPD_ORDER] = 0
    return m


def test_defrag_mode_keeps_nofragment_until_reclaim_and_compaction_failed():
    """v6.15+ vm.defrag_mode: gfp_to_alloc_flags() sets ALLOC_NOFRAGMENT, get_page_from_freelist()
    does not retry without it, the slow path drops it only where it would otherwise give up,
    and kswapd is asked for at least pageblock order (mm/page_alloc.c)."""
    m = defrag_machine(False)
    assert m.alloc(0, G.GFP_KERNEL) >= 0
    assert m.vm(mz.VM_NOFRAG_RETRY) >= 1 and allocstall(m) == 0  # the fast path falls back at once
    d = defrag_machine(True)
    assert d.alloc(0, G.GFP_KERNEL) >= 0
    assert d.vm(mz.VM_NOFRAG_RETRY) == 0
    assert allocstall(d) == MAX_RECLAIM_RETRIES + 1  # reclaim (nothing to reclaim) first, then the fallback
    assert int(d.C[mz.H_KSWAPD_ORDER]) == mz.PAGEBLOCK_ORDER
    d.check()


def test_defrag_mode_is_ignored_by_the_6_1_rules():
    m = defrag_machine(True, policy="linux-6.1")
    assert m.alloc(0, G.GFP_KERNEL) >= 0
    assert allocstall(m) == 0
