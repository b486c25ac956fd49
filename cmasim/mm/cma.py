"""CMA areas: the bitmap, cma_alloc() and cma_release().

Kernel: mm/cma.c — struct cma, cma_bitmap_aligned_mask(), cma_bitmap_aligned_offset(),
cma_alloc()/__cma_alloc(), cma_release(); lib/bitmap.c bitmap_find_next_zero_area_off();
mm/cma_sysfs.c; include/trace/events/cma.h.

`cma_alloc` follows mainline: find the next free aligned bitmap run, set it, call
alloc_contig_range() (compiled, cmasim.mm.alloc_contig); on -EBUSY clear the bits, emit
cma_alloc_busy_retry and move to the next aligned candidate (start = bitmap_no + mask + 1);
any other error, or no candidate left, ends the call. v6.15+ (mm/cma.c:cma_range_alloc(),
__cma_alloc()): stop early when the request exceeds the area's available count; `ret` starts
at -EBUSY, so "no aligned free range" and "too little available" return -EBUSY (6.1: -ENOMEM),
and the cma_alloc_finish trace prints pfn=0 on failure (6.1: the last candidate tried). The
sim keeps its own cause counter `fail_no_range` for both versions. A vendor retry policy (Android trees; Policy.cma_retry
= (rounds, sleep_ms)) sleeps and repeats the whole pass while the result is -EBUSY.

The orchestration is Python (a few calls per request); the page-walking work is compiled.
`cma_alloc_steps` is a generator that yields the simulated time to sleep, so the engine
can let the rest of the world run during a retry sleep; `cma_alloc` drives it directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Generator

import numpy as np

from cmasim.mm import mmzone as mz
from cmasim.mm.alloc_contig import (
    BUSY_GAVE_UP, BUSY_LEFT_BEHIND, R_CAUSE, R_FIN_PFN, R_MIGRATED, R_PINNED_SKIPPED, R_SPLITS, alloc_contig_range,
    range_owned_by,
)
from cmasim.mm.cma_release import free_contig_range

EBUSY = -16
ENOMEM = -12
EINVAL = -22


class CmaError(ValueError):
    """A request the kernel would refuse outright (bad area, range not from the area, …)."""


@dataclass
class CmaArea:
    """struct cma: one named area with a bitmap of pages handed out by cma_alloc()."""

    name: str
    base_pfn: int
    count: int
    order_per_bit: int
    area_id: int
    bitmap: np.ndarray = field(init=False)
    alloc_pages_success: int = 0  # sysfs, pages
    alloc_pages_fail: int = 0
    release_pages_success: int = 0
    requests: int = 0
    successes: int = 0
    fail_no_range: int = 0  # no free aligned range or too little available (-ENOMEM; 6.15+ -EBUSY)
    fail_busy: int = 0  # -EBUSY: every candidate range was busy
    fail_nomem: int = 0  # -ENOMEM from alloc_contig_range(): no migration target could be allocated
    fail_other: int = 0
    busy_retries: int = 0
    retry_sleeps: int = 0
    pages_migrated: int = 0
    pinned_skipped: int = 0
    thp_splits: int = 0  # THPs split by alloc_contig_range() migration (no order-9 target)
    # Why candidate ranges failed with -EBUSY (every busy retry and the last failed candidate):
    busy_gave_up: int = 0  # migration gave up: a batch still failed after 5 migrate_pages() calls
    busy_skipped: int = 0  # test_pages_isolated() hit a page the isolation scan skipped/left behind
    busy_isolation: int = 0  # start_isolate_page_range() refused a pageblock
    last_busy: tuple = (-1, 0)  # (first busy pfn, R_CAUSE) of the last -EBUSY range
    latencies_ns: list[int] = field(default_factory=list)
    failed_latencies_ns: list[int] = field(default_factory=list)

    def __post_init__(self):
        self.bitmap = np.zeros(self.count >> self.order_per_bit, dtype=bool)

    @property
    def available_count(self) -> int:
        return self.count - (int(self.bitmap.sum()) << self.order_per_bit)

    def sysfs(self) -> dict[str, int]:
        """/sys/kernel/mm/cma/<name>/*"""
        return {"alloc_pages_success": self.alloc_pages_success, "alloc_pages_fail": self.alloc_pages_fail,
                "release_pages_success": self.release_pages_success, "total_pages": self.count,
                "available_pages": self.available_count}


def cma_bitmap_aligned_offset(base_pfn: int, align_order: int, order_per_bit: int) -> int:
    """mm/cma.c:cma_bitmap_aligned_offset(): `(base_pfn & (2^align - 1)) >> order_per_bit`.

    The offset tells bitmap_find_next_zero_area_off() where the aligned pfns fall relative to
    bit 0 (6.1 on cma->base_pfn, 6.15+ on cmr->base_pfn; the same for one-range areas)."""
    return (base_pfn & ((1 << align_order) - 1)) >> order_per_bit


def bitmap_find_next_zero_area_off(bm: np.ndarray, start: int, nr: int, align_mask: int, align_offset: int) -> int:
    """lib/bitmap.c: the first index >= start of `nr` clear bits, aligned; >= size if none."""
    size = bm.shape[0]
    while True:
        free = np.flatnonzero(~bm[start:])
        if free.size == 0:
            return size
        index = start + int(free[0])
        index = ((index + align_offset + align_mask) & ~align_mask) - align_offset
        end = index + nr
        if end > size:
            return end
        used = np.flatnonzero(bm[index:end])
        if used.size:
            start = index + int(used[0]) + 1
            continue
        return index


Tracer = Callable[[str, str], None]


def cma_alloc_steps(m, area: CmaArea, count: int, align: int, tracer: Tracer | None = None,
                    cpu: int = 0) -> Generator[int, None, tuple[int, int]]:
    """cma_alloc() as a generator: yields retry sleeps (ns); returns (pfn or -1, errno)."""
    if count <= 0 or align < 0 or align > mz.MAX_PAGE_ORDER + 8:
        raise CmaError(f"cma_alloc({area.name}): invalid count {count} or align {align}")
    opb = area.order_per_bit
    mask = (1 << (align - opb)) - 1 if align > opb else 0
    offset = cma_bitmap_aligned_offset(area.base_pfn, align, opb)
    nbits = (count + (1 << opb) - 1) >> opb
    maxno = area.bitmap.shape[0]
    res = np.zeros(8, dtype=np.int64)
    v = m.policy.version
    if tracer:
        if v >= 618:
            tracer("cma_alloc_start", f"name={area.name} request_count={count} available_count="
                   f"{area.available_count} total_count={area.count} align={align}")
        else:
            tracer("cma_alloc_start", f"name={area.name} count={count} align={align}")
    area.requests += 1
    rounds, sleep_ms = m.policy.cma_retry
    # 6.15+ cma_range_alloc() starts from -EBUSY (so "no aligned free range" and "too little
    # available" return -EBUSY); 6.1 cma_alloc() starts from -ENOMEM.
    ret0 = EBUSY if v >= 615 else ENOMEM
    ret = ret0
    pfn = -1
    last_pfn = -1
    contig_nomem = False
    tried = False
    for rnd in range(rounds + 1):
        start = 0
        ret = ret0
        tried = False
        while True:
            if v >= 615 and count > area.available_count:
                break
            bitmap_no = bitmap_find_next_zero_area_off(area.bitmap, start, nbits, mask, offset)
            if bitmap_no + nbits > maxno:
                break
            tried = True
            area.bitmap[bitmap_no:bitmap_no + nbits] = True
            cand = area.base_pfn + (bitmap_no << opb)
            last_pfn = cand
            ret = int(alloc_contig_range(m.S, m.C, cpu, cand, cand + count, True, area.area_id, res))
            area.pages_migrated += int(res[R_MIGRATED])
            area.pinned_skipped += int(res[R_PINNED_SKIPPED])
            area.thp_splits += int(res[R_SPLITS])
            if ret == EBUSY:
                cause = int(res[R_CAUSE])
                area.last_busy = (int(res[R_FIN_PFN]), cause)  # for the busy_retry tracer (cmasim explain)
                if cause == BUSY_GAVE_UP:
                    area.busy_gave_up += 1
                elif cause == BUSY_LEFT_BEHIND:
                    area.busy_skipped += 1
                else:
                    area.busy_isolation += 1
            if tracer:
                tracer("", "")  # flush core records (migrations, test_pages_isolated) in order
            if ret == 0:
                pfn = cand
                break
            area.bitmap[bitmap_no:bitmap_no + nbits] = False
            if ret != EBUSY:
                contig_nomem = ret == ENOMEM
                break
            area.busy_retries += 1
            if tracer:
                tracer("cma_alloc_busy_retry", f"name={area.name} pfn=0x{cand:x} page={_page(cand)} "
                       f"count={count} align={align}")
            start = bitmap_no + mask + 1
        if ret != EBUSY or rnd == rounds:
            break
        area.retry_sleeps += 1
        yield sleep_ms * 1_000_000
    if ret == 0:
        area.successes += 1
        area.alloc_pages_success += count
        m.C[int(m.C[mz.H_VM]) + mz.VM_CMA_ALLOC_SUCCESS] += 1
    else:
        area.alloc_pages_fail += count
        m.C[int(m.C[mz.H_VM]) + mz.VM_CMA_ALLOC_FAIL] += 1
        if not tried:
            area.fail_no_range += 1  # the sim's own cause: no aligned free range / too little available
        elif ret == EBUSY:
            area.fail_busy += 1
        elif ret == ENOMEM and contig_nomem:
            area.fail_nomem += 1
        else:
            area.fail_other += 1
    if tracer:
        if v >= 615:
            shown = pfn if pfn >= 0 else 0  # __cma_alloc(): page ? page_to_pfn(page) : 0
        else:
            shown = pfn if pfn >= 0 else (last_pfn if last_pfn >= 0 else (1 << 64) - 1)
        tail = f" errorno={ret}" if v >= 603 else ""
        tracer("cma_alloc_finish", f"name={area.name} pfn=0x{shown:x} page={_page(pfn)} count={count} "
               f"align={align}{tail}")
    return pfn, ret


def _page(pfn: int) -> str:
    from cmasim.trace.ftrace import hashed_page

    return hashed_page(pfn)


def cma_alloc(m, area: CmaArea, count: int, align: int, tracer: Tracer | None = None,
              cpu: int = 0) -> tuple[int, int, int]:
    """Run cma_alloc() to completion, letting the world run during retry sleeps.

    Returns (pfn or -1, errno, latency in simulated ns). The clock advances with the work of
    every alloc_contig_range() attempt (isolation, drains, migration) and with the sleeps, so
    the latency is simply the simulated time the call took.
    """
    t0 = m.now_ns
    gen = cma_alloc_steps(m, area, count, align, tracer, cpu)
    try:
        while True:
            ns = next(gen)
            m.advance(m.now_ns + ns)
    except StopIteration as stop:
        pfn, ret = stop.value
    latency = m.now_ns - t0
    (area.latencies_ns if ret == 0 else area.failed_latencies_ns).append(latency)
    return pfn, ret, latency


def cma_release(m, area: CmaArea, pfn: int, count: int, tracer: Tracer | None = None, cpu: int = 0) -> None:
    """cma_release(): the range must come from this area's cma_alloc(); pages are freed one by
    one through the per-CPU lists (free_contig_range() up to v6.18)."""
    if pfn < area.base_pfn or pfn + count > area.base_pfn + area.count or count <= 0:
        raise CmaError(f"cma_release({area.name}): pfn {pfn:#x}+{count} is outside the area")
    opb = area.order_per_bit
    b0 = (pfn - area.base_pfn) >> opb
    b1 = (pfn + count - area.base_pfn + (1 << opb) - 1) >> opb
    if not area.bitmap[b0:b1].all() or not range_owned_by(m.S, m.C, pfn, pfn + count, area.area_id):
        raise CmaError(f"cma_release({area.name}): pfn {pfn:#x}+{count} was not allocated from this area")
    free_contig_range(m.S, m.C, cpu, pfn, count)
    area.bitmap[b0:b1] = False
    area.release_pages_success += count
    if tracer:
        tracer("cma_release", f"name={area.name} pfn=0x{pfn:x} page={_page(pfn)} count={count}")


def latency_summary(lat_ns: list[int]) -> dict[str, float]:
    if not lat_ns:
        return {"p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    a = np.asarray(lat_ns, dtype=np.float64) / 1e6
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p90_ms": round(float(np.percentile(a, 90)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3), "max_ms": round(float(a.max()), 3)}


def area_metrics(area: CmaArea) -> dict:
    return {
        "base_pfn": area.base_pfn, "count": area.count, "requests": area.requests, "success": area.successes,
        "fail": {"no_free_range": area.fail_no_range, "busy": area.fail_busy, "nomem": area.fail_nomem,
                 "other": area.fail_other},
        "busy_retries": area.busy_retries, "retry_sleeps": area.retry_sleeps,
        "pages_migrated": area.pages_migrated, "pinned_pages_skipped": area.pinned_skipped,
        "thp_splits": area.thp_splits,
        "busy_causes": {"migration_gave_up": area.busy_gave_up, "skipped_at_isolation_scan": area.busy_skipped,
                        "isolation_failed": area.busy_isolation},
        "thp_splits_per_request": round(area.thp_splits / area.requests, 3) if area.requests else 0.0,
        "latency": latency_summary(area.latencies_ns),
        "failed_latency": latency_summary(area.failed_latencies_ns),
        "sysfs": area.sysfs(),
    }
