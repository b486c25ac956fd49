"""Zone set-up arithmetic: watermarks, lowmem reserve, per-CPU batch/high, vmstat thresholds.

Kernel: mm/page_alloc.c — calculate_min_free_kbytes, nr_free_buffer_pages,
__setup_per_zone_wmarks, setup_per_zone_lowmem_reserve, zone_batchsize, zone_highsize,
zone_set_pageset_high_and_batch; mm/khugepaged.c set_recommended_min_free_kbytes;
mm/vmstat.c calculate_normal_threshold.

Plain integer functions of the zone sizes, so that tests can check them against a real
/proc/zoneinfo (kernel-model.md §3.4, §4.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import isqrt

from cmasim.mm.mmzone import MIGRATE_PCPTYPES, PAGEBLOCK_NR_PAGES, PAGE_SHIFT, ZONE_MOVABLE, ZONE_NORMAL

LOWMEM_RESERVE_RATIO = (256, 256, 32, 0)  # sysctl_lowmem_reserve_ratio: DMA, DMA32, Normal, Movable
MIN_PERCPU_PAGELIST_HIGH_FRACTION = 8


@dataclass
class ZoneMarks:
    min: int
    low: int
    high: int
    promo: int


def calculate_min_free_kbytes(lowmem_pages: int) -> int:
    """calculate_min_free_kbytes(): clamp(int_sqrt(lowmem_kbytes * 16), 128, 262144)."""
    lowmem_kbytes = lowmem_pages * 4
    return max(128, min(262144, isqrt(lowmem_kbytes * 16)))


def recommended_min_free_kbytes(nr_zones: int, nr_free_buffer_pages: int) -> int:
    """set_recommended_min_free_kbytes() (khugepaged, THP enabled): pageblock_nr_pages * nr_zones
    * (2 + MIGRATE_PCPTYPES^2), capped at 5% of nr_free_buffer_pages, in kB."""
    rec = PAGEBLOCK_NR_PAGES * nr_zones * 2 + PAGEBLOCK_NR_PAGES * nr_zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES
    rec = min(rec, nr_free_buffer_pages // 20)
    return rec << (PAGE_SHIFT - 10)


def setup_per_zone_wmarks(managed: dict[int, int], min_free_kbytes: int,
                          watermark_scale_factor: int = 10) -> dict[int, ZoneMarks]:
    """__setup_per_zone_wmarks(): split pages_min over lowmem zones in proportion to managed pages.

    `managed` maps kernel zone index -> managed pages. Movable gets clamp(managed/1024, 32, 128).
    """
    pages_min = min_free_kbytes >> (PAGE_SHIFT - 10)
    lowmem = sum(m for z, m in managed.items() if z != ZONE_MOVABLE)
    out = {}
    for z, m in managed.items():
        tmp = pages_min * m // lowmem if lowmem else 0
        mn = max(32, min(128, m // 1024)) if z == ZONE_MOVABLE else tmp
        # The kswapd gap comes from the proportional share even for Movable (whose min is clamped).
        gap = max(tmp // 4, m * watermark_scale_factor // 10000)
        out[z] = ZoneMarks(min=mn, low=mn + gap, high=mn + 2 * gap, promo=mn + 3 * gap)
    return out


def nr_free_buffer_pages(managed: dict[int, int], marks: dict[int, ZoneMarks] | None) -> int:
    """nr_free_buffer_pages(): sum over zones <= Normal of managed - high watermark."""
    total = 0
    for z, m in managed.items():
        if z <= ZONE_NORMAL:
            high = marks[z].high if marks else 0
            total += max(0, m - high)
    return total


def default_min_free_kbytes(managed: dict[int, int], thp: bool = True) -> int:
    """min_free_kbytes at boot: the sqrt rule, raised by khugepaged's recommendation when THP is on."""
    mfk = calculate_min_free_kbytes(nr_free_buffer_pages(managed, None))
    if thp:
        marks = setup_per_zone_wmarks(managed, mfk)
        nr_zones = sum(1 for z, m in managed.items() if z <= ZONE_NORMAL and m > 0)
        rec = recommended_min_free_kbytes(nr_zones, nr_free_buffer_pages(managed, marks))
        mfk = max(mfk, rec)
    return mfk


def setup_per_zone_lowmem_reserve(managed: dict[int, int]) -> dict[int, list[int]]:
    """setup_per_zone_lowmem_reserve(): reserve[i][j] = sum(managed of zones i+1..j) / ratio[i]."""
    out = {}
    for i in range(4):
        res = [0, 0, 0, 0]
        ratio = LOWMEM_RESERVE_RATIO[i]
        if i in managed and ratio and managed[i]:
            acc = 0
            for j in range(i + 1, 4):
                acc += managed.get(j, 0)
                res[j] = acc // ratio
        out[i] = res
    return out


def rounddown_pow_of_two(n: int) -> int:
    return 1 << (n.bit_length() - 1) if n > 0 else 0


def zone_batchsize(managed: int) -> int:
    """zone_batchsize() (with the caller's max(1, ...)): 63 for any zone of 1 GiB or more."""
    batch = min(managed >> 10, (1 << 20) // 4096)
    batch //= 4
    if batch < 1:
        batch = 1
    batch = rounddown_pow_of_two(batch + batch // 2) - 1
    return max(1, batch)


def zone_highsize(total_pages: int, batch: int, nr_cpus: int) -> int:
    """zone_highsize(): total_pages split over the node's CPUs, at least 4 * batch."""
    return max(total_pages // max(1, nr_cpus), batch << 2)


def pcp_high_limits(managed: int, low_wmark: int, batch: int, nr_cpus: int,
                    high_fraction: int = 0) -> tuple[int, int]:
    """zone_set_pageset_high_and_batch(): (high_min, high_max). v6.1 uses high_min as its `high`."""
    if high_fraction:
        h = zone_highsize(managed // high_fraction, batch, nr_cpus)
        return h, h
    return (zone_highsize(low_wmark, batch, nr_cpus),
            zone_highsize(managed // MIN_PERCPU_PAGELIST_HIGH_FRACTION, batch, nr_cpus))


def calculate_normal_threshold(managed: int, nr_cpus: int) -> int:
    """calculate_normal_threshold(): 2 * fls(cpus) * (1 + fls(managed in 128 MiB units)), <= 125."""
    mem = managed >> (27 - PAGE_SHIFT)
    return min(125, 2 * nr_cpus.bit_length() * (1 + mem.bit_length()))
