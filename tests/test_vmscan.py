"""Reclaim (cmasim/mm/vmscan.py): counters, kswapd's balance test, boost reclaim, the
reclaim-active flag. Interpreted core (tests/conftest.py)."""

import pytest

from cmasim import gfp as G
from cmasim.machine import InvariantViolation, Machine, MachineConfig
from cmasim.mm import mmzone as mz
from cmasim.policy import get_policy

FILE = mz.OW_FILE


def vm_slot(m, idx):
    return int(m.C[mz.H_VM]) + idx


def test_pgscan_counts_pages_so_it_is_never_below_pgsteal():
    """mm/vmscan.c shrink_inactive_list(): PGSCAN_* and PGSTEAL_* both count pages. Reclaiming
    order-3 page-cache folios must scan at least the pages it steals (the old model counted
    one per sampled block, so pgscan was 8x below pgsteal here)."""
    m = Machine(MachineConfig(zones=[("DMA32", 8192)], nr_cpus=1, compaction=False, swap_bytes=0,
                              kswapd_rate_pages_s=10_000_000), get_policy("linux-6.18"))
    t = 0
    for _ in range(1500):
        t += 20_000
        m.advance(t)
        m.alloc(3, G.GFP_HIGHUSER_MOVABLE, owner=FILE)
    m.advance(t + 50_000_000)
    steal_k, scan_k = m.vm(mz.VM_PGSTEAL_KSWAPD), m.vm(mz.VM_PGSCAN_KSWAPD)
    steal_d, scan_d = m.vm(mz.VM_PGSTEAL_DIRECT), m.vm(mz.VM_PGSCAN_DIRECT)
    assert steal_k > 0 and steal_k % 8 == 0
    assert scan_k >= steal_k and scan_d >= steal_d
    m.check()


def test_checker_rejects_pgsteal_above_pgscan():
    m = Machine(MachineConfig(zones=[("DMA32", 4096)], nr_cpus=1, compaction=False), get_policy("linux-6.18"))
    m.check()
    m.C[vm_slot(m, mz.VM_PGSTEAL_DIRECT)] = 5
    m.C[vm_slot(m, mz.VM_PGSCAN_DIRECT)] = 4
    with pytest.raises(InvariantViolation, match="pgscan 4 < pgsteal 5"):
        m.check()
