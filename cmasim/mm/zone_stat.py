"""Per-CPU zone counters: the vmstat deltas, their folding, and the readers (mm/vmstat.c).

Kernel: mm/vmstat.c __mod_zone_page_state(), refresh_cpu_vm_stats(),
calculate_normal_threshold(), calculate_pressure_threshold(), refresh_zone_stat_thresholds(),
set_pgdat_percpu_threshold(); include/linux/vmstat.h zone_page_state(),
zone_page_state_snapshot().

A zone counter is an atomic (``zone->vm_stat[item]``, here ``Z_VM_NR_FREE`` /
``Z_VM_NR_FREE_CMA``) plus one signed delta per CPU (``per_cpu_zonestat.vm_stat_diff[item]``,
here the ``P_VM_DIFF_*`` slots of each (zone, CPU) pageset). An update on a CPU adds to that
CPU's delta and folds the whole delta into the atomic only when it leaves
[-stat_threshold, stat_threshold]; the vmstat worker folds every delta once a second. Readers
see the folded value (`zone_page_state`) or, where the kernel pays for it, folded + all deltas
(`zone_page_state_snapshot`). In 6.18 account_freepages() updates NR_FREE_PAGES and
NR_FREE_CMA_PAGES this way; nr_free_highatomic is a plain zone field and NR_FREE_PAGES_BLOCKS
moves in steps of 2^order >= 512 > stat_threshold (<= 125), so every update of it folds at
once: the model keeps both exact.

The model also keeps the exact counts (``Z_NR_FREE``, ``Z_NR_FREE_CMA``: what the free lists
hold); the invariant checker verifies folded + sum of deltas == exact. Updates go to the CPU of
the event being processed (``C[H_CPU]``). Simplification: v6.1 batches rmqueue_bulk()'s
NR_FREE_PAGES update into one call per refill, the model makes one call per block taken for
every version (the v6.10+ account_freepages() granularity); the fold timing of v6.1 differs
accordingly.
"""

from cmasim.mm.jit import kjit, kjit_inline
from cmasim.mm.mmzone import (
    H_CPU, H_NCPU, H_NZONES, H_PCP, H_ZONE, P_VM_DIFF_CMA, P_VM_DIFF_FREE, PS, ZS,
    Z_MANAGED, Z_NR_FREE, Z_NR_FREE_CMA, Z_STAT_THRESHOLD, Z_VM_NR_FREE, Z_VM_NR_FREE_CMA, Z_WMARK_HIGH,
    Z_WMARK_LOW, Z_WMARK_MIN,
)


@kjit_inline
def fls(x):
    """fls(): the 1-based index of the highest set bit, 0 for 0."""
    n = 0
    while x > 0:
        n += 1
        x >>= 1
    return n


@kjit_inline
def zstat_pcp(C, zb, cpu):
    """The (zone, CPU) pageset that holds this CPU's vm_stat_diff[] for the zone at `zb`."""
    return C[H_PCP] + (((zb - C[H_ZONE]) // ZS) * C[H_NCPU] + cpu) * PS


@kjit_inline
def mod_zone_page_state(C, zb, zitem, ditem, delta):
    """__mod_zone_page_state(): add `delta` to this CPU's diff; when |diff| > stat_threshold,
    add the whole diff to the zone's atomic and zero it. Kernel: mm/vmstat.c
    __mod_zone_page_state() (the caller, account_freepages(), holds the zone lock)."""
    pc = zstat_pcp(C, zb, C[H_CPU])
    x = C[pc + ditem] + delta
    t = C[zb + Z_STAT_THRESHOLD]
    if x > t or x < -t:
        C[zb + zitem] += x
        x = 0
    C[pc + ditem] = x


@kjit_inline
def account_free_counters(C, zb, nr, cma):
    """The NR_FREE_PAGES (and, for a CMA list, NR_FREE_CMA_PAGES) part of account_freepages():
    the exact counts, and the kernel's __mod_zone_page_state() on the per-CPU deltas.
    Kernel: mm/page_alloc.c account_freepages() (v6.10+)."""
    C[zb + Z_NR_FREE] += nr
    mod_zone_page_state(C, zb, Z_VM_NR_FREE, P_VM_DIFF_FREE, nr)
    if cma:
        C[zb + Z_NR_FREE_CMA] += nr
        mod_zone_page_state(C, zb, Z_VM_NR_FREE_CMA, P_VM_DIFF_CMA, nr)


@kjit_inline
def zone_page_state(C, zb, zitem):
    """zone_page_state(): the folded counter, clamped at 0 (CONFIG_SMP) — what watermark checks
    and the CMA balancing rule read. Kernel: include/linux/vmstat.h zone_page_state()."""
    x = C[zb + zitem]
    return x if x > 0 else 0


@kjit
def zone_page_state_snapshot(C, zb, zitem):
    """zone_page_state_snapshot(): the folded counter plus every CPU's diff, clamped at 0.
    Kernel: include/linux/vmstat.h zone_page_state_snapshot()."""
    ditem = P_VM_DIFF_FREE if zitem == Z_VM_NR_FREE else P_VM_DIFF_CMA
    x = C[zb + zitem]
    for cpu in range(C[H_NCPU]):
        x += C[zstat_pcp(C, zb, cpu) + ditem]
    return x if x > 0 else 0


@kjit
def calculate_normal_threshold(C, zb):
    """calculate_normal_threshold(): 2 * fls(cpus) * (1 + fls(managed in 128 MiB units)), at
    most 125. Kernel: mm/vmstat.c calculate_normal_threshold()."""
    mem = C[zb + Z_MANAGED] >> (27 - 12)
    t = 2 * fls(C[H_NCPU]) * (1 + fls(mem))
    return t if t < 125 else 125


@kjit
def calculate_pressure_threshold(C, zb):
    """calculate_pressure_threshold(): (low - min) / cpus, within [1, 125] — used while kswapd
    is awake on zones with a percpu_drift_mark. Kernel: mm/vmstat.c
    calculate_pressure_threshold()."""
    t = (C[zb + Z_WMARK_LOW] - C[zb + Z_WMARK_MIN]) // C[H_NCPU]
    if t < 1:
        t = 1
    return t if t < 125 else 125


@kjit
def percpu_drift_mark(C, zb):
    """zone->percpu_drift_mark: high + cpus * normal threshold when that drift exceeds low - min
    (the folded NR_FREE_PAGES could pass LOW while MIN is breached), else 0. Kernel:
    mm/vmstat.c refresh_zone_stat_thresholds(). Simplification: computed from the current
    watermarks (without boost) at every use; the kernel computes it at boot, CPU hotplug
    and memory onlining (init_per_zone_wmark_min()), which are the only times the model's
    watermarks change (min_free_kbytes is not changed at run time)."""
    max_drift = C[H_NCPU] * calculate_normal_threshold(C, zb)
    if max_drift > C[zb + Z_WMARK_LOW] - C[zb + Z_WMARK_MIN]:
        return C[zb + Z_WMARK_HIGH] + max_drift
    return 0


@kjit
def set_pgdat_percpu_threshold(C, pressure):
    """set_pgdat_percpu_threshold(pgdat, calculate_pressure/normal_threshold): kswapd lowers the
    threshold of zones with a percpu_drift_mark while it is awake and restores it before it
    sleeps; other zones keep theirs. Kernel: mm/vmstat.c set_pgdat_percpu_threshold(), called
    from mm/vmscan.c kswapd_try_to_sleep()."""
    for z in range(C[H_NZONES]):
        zb = C[H_ZONE] + z * ZS
        if percpu_drift_mark(C, zb) == 0:
            continue
        if pressure:
            C[zb + Z_STAT_THRESHOLD] = calculate_pressure_threshold(C, zb)
        else:
            C[zb + Z_STAT_THRESHOLD] = calculate_normal_threshold(C, zb)


@kjit
def refresh_cpu_vm_stats(C, cpu):
    """refresh_cpu_vm_stats(): fold this CPU's diffs of every zone into the zones' atomics (the
    vmstat worker, once a second, before decay_pcp_high()). Kernel: mm/vmstat.c
    refresh_cpu_vm_stats()."""
    for z in range(C[H_NZONES]):
        zb = C[H_ZONE] + z * ZS
        pc = zstat_pcp(C, zb, cpu)
        C[zb + Z_VM_NR_FREE] += C[pc + P_VM_DIFF_FREE]
        C[pc + P_VM_DIFF_FREE] = 0
        C[zb + Z_VM_NR_FREE_CMA] += C[pc + P_VM_DIFF_CMA]
        C[pc + P_VM_DIFF_CMA] = 0


@kjit
def fold_all_vm_stats(C):
    """Every CPU's diffs folded (e.g. once boot memory is freed, as the first worker runs
    would): folded == exact. Kernel: mm/vmstat.c refresh_vm_stats() / the vmstat worker."""
    for cpu in range(C[H_NCPU]):
        refresh_cpu_vm_stats(C, cpu)
