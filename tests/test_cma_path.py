"""The CMA path against the kernel source: cma_alloc() bitmap and result rules, the
alloc_contig_range() migration batches, migrate_pages() passes (kernel review W6-W8, W11,
W12, W15; R13 THP split; transient migration failures)."""

import pytest

from cmasim import gfp as G
from cmasim.machine import Machine, MachineConfig
from cmasim.mm import mmzone as mz
from cmasim.mm.cma import EBUSY, ENOMEM, cma_alloc, cma_bitmap_aligned_offset
from cmasim.policy import get_policy


def cma_machine(policy="linux-6.18", zones=(("DMA32", 8192),), base=2048, count=4096, **kw):
    kw.setdefault("reclaim", False)
    kw.setdefault("compaction", False)
    cfg = MachineConfig(zones=list(zones), nr_cpus=2, cma_areas=[("c", base, count, 0)], **kw)
    m = Machine(cfg, get_policy(policy))
    m.check()
    return m


class Tracer:
    def __init__(self):
        self.lines = []

    def __call__(self, name, text):
        if name:
            self.lines.append((name, text))

    def last(self, name):
        return [t for n, t in self.lines if n == name][-1]


# --- W6: cma_bitmap_aligned_offset ------------------------------------------------------------
def test_bitmap_aligned_offset_is_base_modulo_alignment():
    """mm/cma.c:cma_bitmap_aligned_offset() = (base_pfn & (2^align - 1)) >> order_per_bit."""
    assert cma_bitmap_aligned_offset(2560, 11, 0) == 512
    assert cma_bitmap_aligned_offset(2560, 11, 2) == 128
    assert cma_bitmap_aligned_offset(4096, 11, 0) == 0


def test_large_alignment_with_unaligned_base_returns_an_aligned_range():
    # base 2560 = 512 mod 2048: the first 2^11-aligned pfn in the area is 4096.
    m = cma_machine(base=2560, count=4096)
    a = m.area("c")
    pfn, ret, _ = cma_alloc(m, a, 16, 11)
    m.check()
    assert ret == 0 and pfn == 4096 and pfn % 2048 == 0


# --- W7: 6.15+ result code and finish trace ---------------------------------------------------
@pytest.mark.parametrize("policy", ["linux-6.18", "linux-6.1"])
def test_no_free_range_result_and_finish_pfn(policy):
    m = cma_machine(policy)
    a = m.area("c")
    tr = Tracer()
    pfn, ret, _ = cma_alloc(m, a, 4096, 0, tracer=tr)  # take the whole area
    assert ret == 0
    pfn, ret, _ = cma_alloc(m, a, 16, 0, tracer=tr)  # count > available / no zero area
    assert pfn == -1 and a.fail_no_range == 1 and a.fail_busy == 0
    if policy == "linux-6.18":
        assert ret == EBUSY
        assert "pfn=0x0 " in tr.last("cma_alloc_finish") and "errorno=-16" in tr.last("cma_alloc_finish")
    else:
        assert ret == ENOMEM  # 6.1: no errorno field; pfn is the last candidate (none: all ones)
        assert "pfn=0xffffffffffffffff " in tr.last("cma_alloc_finish")


def test_618_busy_failure_prints_pfn_zero():
    m = cma_machine("linux-6.18")
    a = m.area("c")
    # One pinned borrowed page in every 1024-page candidate makes every candidate busy.
    while m.zone_field(0, mz.Z_NR_FREE) - m.zone_field(0, mz.Z_NR_FREE_CMA) > 600:
        assert m.alloc(0, G.GFP_KERNEL) >= 0
    got = [p for p in (m.alloc(0, G.GFP_HIGHUSER_MOVABLE, owner=mz.OW_FILE) for _ in range(4000)) if 2048 <= p]
    for c in range(4):
        p = next(q for q in got if 2048 + 1024 * c <= q < 2048 + 1024 * (c + 1))
        assert m.pin(p, duration_ns=10**12) == p
    tr = Tracer()
    pfn, ret, _ = cma_alloc(m, a, 1024, 10, tracer=tr)
    assert (pfn, ret) == (-1, EBUSY) and a.busy_retries == 4 and a.fail_busy == 1
    assert "pfn=0x0 " in tr.last("cma_alloc_finish")
