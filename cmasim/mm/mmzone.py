"""Geometry, migratetypes and the packed state layout (include/linux/mmzone.h).

Kernel: include/linux/mmzone.h, include/linux/pageblock-flags.h, include/linux/gfp_types.h.

The whole allocator state lives in two flat arrays so that the compiled core gets few
arguments (performance-notes.md, "Why naive numba is slow"):

* ``S`` (int32): ``NODE[nodes][NODE_W] | PB[nr_pageblocks] | HANDLE[N] | LIVE[N] | UNMAPPED[N]``.
  ``nodes = N + nr_lists``: one record per page plus one per list sentinel, so every free
  list and every per-CPU list is an intrusive doubly-linked list threaded through the
  records (a page is on at most one list). O(1) add-head, add-tail, remove-any. A page's
  record holds its list links, its page word and its owner word side by side (fields
  ``F_NEXT``, ``F_PREV``, ``F_PINFO``, ``F_OWNER`` at ``NODE_W * pfn + F_*``), 16 bytes
  aligned, so one cache line holds all of it — as ``struct page`` keeps ``lru`` and
  ``flags`` on one line (include/linux/mm_types.h). The allocator's bulk paths touch a
  random page per block moved (`rmqueue_bulk`, `free_pcppages_bulk`); separate arrays
  made that three or four cache misses instead of one (docs/performance.md).
* ``C`` (int64): a header of offsets, then per-zone structs, per-CPU pagesets, per-list
  block counts, vmstat counters and the policy record.

All constants are plain module-level ints so numba freezes them at compile time (the
source hash in `cmasim.mm.jit` wipes the cache when they change).
"""

from __future__ import annotations

# --- geometry (x86-64, 4 KiB pages) -------------------------------------------------
PAGE_SHIFT = 12
PAGE_SIZE = 4096
MAX_PAGE_ORDER = 10
NR_PAGE_ORDERS = 11
PAGEBLOCK_ORDER = 9
PAGEBLOCK_NR_PAGES = 512
PAGE_ALLOC_COSTLY_ORDER = 3
HPAGE_PMD_ORDER = 9
PCP_BATCH_SCALE_MAX = 5  # CONFIG_PCP_BATCH_SCALE_MAX

# --- migratetypes, numbered as mainline prints them (CONFIG_CMA, CONFIG_MEMORY_ISOLATION)
MIGRATE_UNMOVABLE = 0
MIGRATE_MOVABLE = 1
MIGRATE_RECLAIMABLE = 2
MIGRATE_PCPTYPES = 3
MIGRATE_HIGHATOMIC = 3
MIGRATE_CMA = 4
MIGRATE_ISOLATE = 5
MIGRATE_TYPES = 6
MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")

# --- zones (kernel zone indices) ------------------------------------------------------
ZONE_DMA = 0
ZONE_DMA32 = 1
ZONE_NORMAL = 2
ZONE_MOVABLE = 3
MAX_NR_ZONES = 4
ZONE_NAMES = ("DMA", "DMA32", "Normal", "Movable")
ZONE_BELOW_HIGH = 1  # zone->flags bit values used here
ZONE_BOOSTED_WATERMARK = 2
ZONE_RECLAIM_ACTIVE = 4

# --- GFP bits (include/linux/gfp_types.h, v6.12 layout, no KASAN/LOCKDEP) ------------
GFP_DMA_ = 0x01
GFP_HIGHMEM_ = 0x02
GFP_DMA32_ = 0x04
GFP_MOVABLE_ = 0x08
GFP_RECLAIMABLE_ = 0x10
GFP_HIGH_ = 0x20
GFP_IO_ = 0x40
GFP_FS_ = 0x80
GFP_ZERO_ = 0x100
GFP_DIRECT_RECLAIM_ = 0x400
GFP_KSWAPD_RECLAIM_ = 0x800
GFP_WRITE_ = 0x1000
GFP_NOWARN_ = 0x2000
GFP_RETRY_MAYFAIL_ = 0x4000
GFP_NOFAIL_ = 0x8000
GFP_NORETRY_ = 0x10000
GFP_MEMALLOC_ = 0x20000
GFP_COMP_ = 0x40000
GFP_NOMEMALLOC_ = 0x80000
GFP_HARDWALL_ = 0x100000
GFP_THISNODE_ = 0x200000
GFP_ACCOUNT_ = 0x400000
GFP_CMA_ = 0x8000000  # Android's out-of-tree __GFP_CMA (bit chosen above the mainline ones)

# --- alloc flags (mm/internal.h) -------------------------------------------------------
ALLOC_WMARK_MIN = 0x0
ALLOC_WMARK_LOW = 0x1
ALLOC_WMARK_HIGH = 0x2
ALLOC_WMARK_MASK = 0x3
ALLOC_NO_WATERMARKS = 0x4
ALLOC_OOM = 0x8
ALLOC_NON_BLOCK = 0x10
ALLOC_MIN_RESERVE = 0x20
ALLOC_CPUSET = 0x40
ALLOC_CMA = 0x80
ALLOC_NOFRAGMENT = 0x100
ALLOC_HIGHATOMIC = 0x200
ALLOC_KSWAPD = 0x800
ALLOC_RESERVES = ALLOC_NON_BLOCK | ALLOC_MIN_RESERVE | ALLOC_HIGHATOMIC | ALLOC_OOM

# --- the page record: S[NODE_W * node + F_*] ------------------------------------------------
NODE_W = 4
F_NEXT = 0  # next node on the page's list (-1: on no list)
F_PREV = 1  # previous node on the page's list
F_PINFO = 2  # the page word below (sentinels: unused)
F_OWNER = 3  # the owner word below (sentinels: unused)


def node_records(S, nodes: int):
    """Python side: the page records as a (nodes, NODE_W) view of S (a row is one record;
    whole-row writes are contiguous, faster than field by field)."""
    return S[:NODE_W * nodes].reshape(nodes, NODE_W)


def unlink_nodes(S, start: int, end: int) -> None:
    """Python side: NEXT and PREV of nodes [start, end) set to -1 (on no list), the page and
    owner words kept. The two links are adjacent words of a record, so they are written as
    one int64 (-1 has every bit set) — one strided pass instead of two (for speed)."""
    assert F_NEXT == 0 and F_PREV == 1 and NODE_W % 2 == 0
    S[NODE_W * start:NODE_W * end].view("int64")[::NODE_W // 2] = -1


def node_field(S, field: int, n: int, start: int = 0):
    """Python side: a strided view of one record field for nodes [start, n) (e.g.
    ``node_field(S, F_PINFO, N)`` is PINFO[0:N]); writes through the view land in S."""
    return S[NODE_W * start + field:NODE_W * n + field:NODE_W] if n > start else S[0:0]

# --- per-page info word PINFO[pfn] ----------------------------------------------------
# bits 0-3 order, bits 4-5 state, bits 6-8 aux migratetype, bits 9-31 list id.
PG_TAIL = 0  # not the head of a block (or never initialised)
PG_BUDDY = 1  # head of a free block on a buddy free list (PageBuddy)
PG_PCP = 2  # head of a block on a per-CPU list
PG_ALLOC = 3  # head of an allocated block; aux = gfp migratetype of the request
PI_ORDER_MASK = 0xF
PI_STATE_SHIFT = 4
PI_AUX_SHIFT = 6
PI_LIST_SHIFT = 9

# --- per-page owner word OWNER[pfn] (meaningful on allocated heads) -----------------------
# bits 0-3 kind, bits 4-19 pin count, bit 20 free pending (freed while pinned),
# bit 21 long-term pinned, bits 24-29 CMA area id (device buffers).
OW_NONE = 0
OW_ANON = 1  # anonymous memory: movable, swappable
OW_FILE = 2  # clean page cache: movable, dropped by reclaim
OW_FILE_DIRTY = 3  # dirty page cache: movable, written back before it can be dropped
OW_SLAB = 4  # kernel/slab: unmovable
OW_SLAB_RECLAIMABLE = 5  # reclaimable slab (shrinkers; not reclaimed by this model)
OW_PGTABLE = 6  # page tables: unmovable
OW_DEVICE = 7  # a cma_alloc() buffer
OW_KIND_MASK = 0xF
OW_PIN_SHIFT = 4
OW_PIN_MASK = 0xFFFF
OW_FREE_PENDING = 1 << 20
OW_LONGTERM = 1 << 21
OW_AREA_SHIFT = 24
OW_TASK_SHIFT = 24  # anonymous memory: the task (1..NR_OOM_TASKS, 0 none) in the same bits (cmasim.mm.oom_kill)
OW_TASK_MASK = 0x3F

# --- per-pageblock word PB[pb] ---------------------------------------------------------
# bits 0-2 migratetype, bit 3 isolate (v6.17+ standalone bit), bit 4 compaction skip,
# bits 8-11 zone slot (index into the zone structs).
PB_MT_MASK = 0x7
PB_ISOLATE = 0x8
PB_SKIP = 0x10
PB_ZONE_SHIFT = 8

# --- list ids -----------------------------------------------------------------------------
# Per zone: NR_PAGE_ORDERS * MIGRATE_TYPES buddy lists, then nr_cpus * NR_PCP_LISTS_MAX.
NR_BUDDY_LISTS = NR_PAGE_ORDERS * MIGRATE_TYPES
NR_PCP_LISTS_MAX = 20

# --- C header -----------------------------------------------------------------------------
H_N = 0  # number of pages (pfn range [0, N))
H_NZONES = 1
H_NCPU = 2
H_NLISTS = 3
H_LPZ = 4  # lists per zone
# slots 5 and 6 unused (were the offsets of PREV and PINFO before the page records, NODE_W)
H_PB = 7
H_NPB = 8
H_ZONE = 9  # offset of zone structs in C
H_PCP = 10
H_LCNT = 11
H_VM = 12
H_POL = 13
H_RNG = 14
H_TRACE_ON = 15
H_TRACE_N = 16
H_TRACE_CAP = 17
H_NOW = 18
H_TRACE_LOST = 19
H_CPU = 20  # CPU of the event being processed (for trace records)
H_TRACE_BASE = 21  # offset of the trace buffer inside C
H_RMQM = 22  # scratch: enum rmqueue_mode carried across one rmqueue_bulk()
H_LAST_MT = 23  # scratch: free-list type the last __rmqueue() block came from
H_NEXT_TICK = 25  # simulated time of the next vmstat worker run
H_SKIPPED = 26  # FREE events whose handle held no live allocation (counted, not dropped)
H_ALLOC_FAILED = 27  # ALLOC events that returned no page
# slot 28 unused (was the offset of OWNER before the page records, NODE_W)
H_HANDLE = 29  # offset of HANDLE[N] in S (handle of the block headed by pfn, or -1)
H_LIVE = 30  # offset of LIVE[N] in S (pfn of the block held by a handle, or -1)
H_NLIVE = 31  # dense-mode live handles (churn); sparse mode (replay) leaves it 0
H_LIVE_PAGES = 32  # pages held by live handles
H_LIVE_DENSE = 33  # 1: LIVE[0:NLIVE] is dense (swap-remove on drop); 0: sparse ids
H_HEAP = 34  # offset of the timer heap in C (pairs: time, payload)
H_HEAP_N = 35
H_HEAP_CAP = 36
H_TIMER_LOST = 37  # timers refused because the heap was full (counted, never silent)
H_COST_NS = 38  # simulated work time accumulated by the current operation (migration, reclaim)
H_KSWAPD_NEXT = 39  # next kswapd run time (0: asleep)
H_KCOMPACTD_NEXT = 40  # next kcompactd run time (0: asleep)
H_PARAM = 41  # offset of the tunables block (T_* slots) in C
H_TIMER_SEQ = 42  # timer insertion counter (deterministic tie-break)
H_PINNERS = 43  # offset of the pinner table in C (PNS slots each)
H_NPINNERS = 44
H_CAND = 45  # offset of the pinners' candidate list in C (handles; cmasim.workload.pinner)
H_NCAND = 46  # entries in the candidate list (set by rescan_candidates)
H_HELD_CMA = 47  # CMA pages held pinned by pinner threads right now (the oracle module's held_cma)
# kswapd / kcompactd / OOM state (cmasim.mm.wakeup, vmscan, compaction, oom_kill)
H_KSWAPD_ORDER = 48  # pgdat->kswapd_order (requested by wakeup_kswapd)
H_KSWAPD_HIGHEST = 49  # pgdat->kswapd_highest_zoneidx + 1 (0: MAX_NR_ZONES, none requested)
H_KSWAPD_RUN = 50  # 1 while a balance_pgdat() run is in progress (between kswapd steps)
H_KSWAPD_RUN_ORDER = 51  # sc.order of the running balance_pgdat() (0 once compact_gap is reclaimed)
H_KSWAPD_RUN_ALLOC_ORDER = 52  # the order the run was started for (kswapd's alloc_order)
H_KSWAPD_RUN_HIGHEST = 53  # highest_zoneidx of the running balance_pgdat()
H_KSWAPD_BOOST_LEFT = 54  # nr_boost_reclaim of the running balance_pgdat()
H_KSWAPD_RECLAIMED = 55  # sc.nr_reclaimed of the running balance_pgdat()
H_KCOMPACTD_ORDER = 56  # pgdat->kcompactd_max_order
H_KCOMPACTD_HIGHEST = 57  # pgdat->kcompactd_highest_zoneidx + 1 (0: nr_zones - 1)
H_OOM_NEXT_TASK = 58  # round-robin task id for the next anonymous fault (oom_kill.py)
H_OOM_LAST_VICTIM = 59  # task id of the last OOM victim (0: none); skipped by new faults
H_HELD_CMA_MAX = 60  # max of H_HELD_CMA while H_ALLOC_ACTIVE (reset by the caller per attempt)
H_PINS_CMA_DURING = 61  # pinner pins on CMA pages while H_ALLOC_ACTIVE
H_ALLOC_ACTIVE = 62  # 1 while a measured cma_alloc() runs (the oracle module's alloc_active)
H_NCAND_CAP = 63  # room of the candidate list
H_UNMAPPED = 64  # offset of UNMAPPED[pfn]: subpages of the large folio headed at pfn its owner unmapped
H_SIZE = 65

# --- zone struct (ZS int64 slots each) ---------------------------------------------------
Z_START = 0
Z_END = 1
Z_IDX = 2  # kernel zone index (ZONE_DMA32, ZONE_NORMAL, ...)
Z_MANAGED = 3
Z_WMARK_MIN = 4
Z_WMARK_LOW = 5
Z_WMARK_HIGH = 6
Z_WMARK_PROMO = 7
Z_BOOST = 8
Z_NR_FREE = 9  # NR_FREE_PAGES
Z_NR_FREE_CMA = 10  # NR_FREE_CMA_PAGES
Z_NR_FREE_HIGHATOMIC = 11
Z_NR_FREE_BLOCKS = 12  # NR_FREE_PAGES_BLOCKS (v6.15+)
Z_FLAGS = 13
Z_NR_ISOLATE_PB = 14
Z_CMA_PAGES = 15
Z_BATCH = 16
Z_HIGH_MIN = 17
Z_HIGH_MAX = 18
Z_STAT_THRESHOLD = 19
Z_LOWMEM = 20  # lowmem_reserve[MAX_NR_ZONES]
Z_AREA = 24  # free_area[o].nr_free, NR_PAGE_ORDERS slots
Z_PRESENT = 35
Z_BOOST_RECLAIM = 36  # zone_boosts[i]: the boost the running balance_pgdat() reclaims for
# zone->vm_stat[]: the folded ("atomic") NR_FREE_PAGES / NR_FREE_CMA_PAGES that zone_page_state()
# reads; Z_NR_FREE / Z_NR_FREE_CMA above are the exact counts (folded + the per-CPU P_VM_DIFF_*).
Z_VM_NR_FREE = 37
Z_VM_NR_FREE_CMA = 38
ZS = 40

# --- per-CPU pageset struct (PS slots) ---------------------------------------------------
P_COUNT = 0
P_HIGH = 1
P_FREE_COUNT = 2  # v6.7+ free_count
P_ALLOC_FACTOR = 3
P_FLAGS = 4
P_FREE_FACTOR = 5  # v6.1 free_factor
# per_cpu_zonestat.vm_stat_diff[] (mm/vmstat.c): this CPU's not yet folded deltas
P_VM_DIFF_FREE = 6  # NR_FREE_PAGES
P_VM_DIFF_CMA = 7  # NR_FREE_CMA_PAGES
PS = 8
PCPF_PREV_FREE_HIGH_ORDER = 1
PCPF_FREE_HIGH_BATCH = 2

# --- vmstat / event counters (VM_* slots after C[H_VM]) -----------------------------------
VM_PGALLOC = 0  # 4 slots, one per kernel zone index: pgalloc_dma, _dma32, _normal, _movable
VM_PGFREE = 4
VM_ALLOC_EVENTS = 5  # __alloc_pages calls
VM_ALLOC_FAIL = 6
VM_FREE_EVENTS = 7
VM_PCP_ALLOC_HITS = 8  # served from a per-CPU list without a refill
VM_PCP_REFILLS = 9  # rmqueue_bulk calls
VM_PCP_REFILL_PAGES = 10
VM_PCP_DRAINS = 11  # free_pcppages_bulk calls
VM_PCP_DRAIN_PAGES = 12
VM_BUDDY_ALLOCS = 13  # rmqueue_buddy calls that returned a page
VM_ZONE_LOCK = 14  # zone->lock acquisitions (buddy alloc, refill, drain, direct free)
VM_MERGES = 15
VM_SPLITS = 16
VM_EXTFRAG = 17  # mm_page_alloc_extfrag events (claims + steals)
VM_CLAIMS = 18  # whole-block claims (block type changed)
VM_STEALS = 19  # single-block steals
VM_CMA_ALLOCS = 20  # blocks taken from MIGRATE_CMA free lists
VM_PCP_FREES = 21  # frees that went to a per-CPU list
VM_DRAIN_ALL = 22  # drain_all_pages calls
VM_SLOWPATH = 23  # allocations that entered the slow path
VM_WMARK_FAIL = 24  # zone skipped by the watermark test
VM_NOFRAG_RETRY = 25  # get_page_from_freelist retries without ALLOC_NOFRAGMENT
VM_PGALLOC_PAGES = 26  # pages allocated (all zones)
VM_PGMIGRATE_SUCCESS = 27
VM_PGMIGRATE_FAIL = 28
VM_COMPACT_STALL = 29
VM_COMPACT_FAIL = 30
VM_COMPACT_SUCCESS = 31
VM_COMPACT_MIGRATE_SCANNED = 32
VM_COMPACT_FREE_SCANNED = 33
VM_COMPACT_ISOLATED = 34
VM_COMPACT_DAEMON_WAKE = 35
VM_THP_FAULT_ALLOC = 36
VM_THP_FAULT_FALLBACK = 37
VM_PGSTEAL_KSWAPD = 38
VM_PGSTEAL_DIRECT = 39
VM_PGSCAN_KSWAPD = 40
VM_PGSCAN_DIRECT = 41
VM_ALLOCSTALL = 42  # 4 slots per kernel zone index
VM_OOM_KILL = 46
VM_PSWPOUT = 47
VM_PGWRITEBACK = 48  # dirty page cache written back by reclaim
VM_PIN_SHORT = 49
VM_PIN_LONGTERM = 50
VM_PIN_FAIL = 51  # pins refused (free page, or long-term migration failed)
VM_PIN_MIGRATED = 52  # pages migrated out of CMA/ZONE_MOVABLE for FOLL_LONGTERM
VM_UNPIN = 53
VM_DEFERRED_FREE = 54  # frees of pinned pages deferred to the unpin
VM_KSWAPD_WAKE = 55
VM_CMA_ALLOC_SUCCESS = 56
VM_CMA_ALLOC_FAIL = 57
VM_RECLAIM_DROPPED_HANDLES = 58  # workload blocks taken away by reclaim (swap/drop)
VM_LONGTERM_PIN_ON_CMA = 59  # long-term pins left on CMA pageblocks (only with a buggy policy)
VM_CMA_TO_NON_CMA = 60  # pages of CMA pageblocks handed to allocations without ALLOC_CMA (contract violation)
VM_GFP_CMA_THP_NO_CMA = 61  # THP-order __GFP_CMA allocations that got no CMA page (failed or non-CMA)
VM_SHORT_PIN_MIGRATED = 62  # short-term pins that first migrated their page (candidate fixes)
VM_CONTIG_RECLAIMED = 63  # clean page-cache pages dropped by alloc_contig_range instead of migrated
VM_GFP_CMA_THP = 64  # THP-order allocations carrying __GFP_CMA
VM_PIN_REFUSED_ISOLATED = 65  # short pins refused while their page sat in an isolated block
VM_OOM_KILL_PAGES = 66  # pages freed by OOM kills (released at once or at the victim's unpins)
VM_OOM_NO_VICTIM = 67  # out_of_memory() calls that found no killable task (the allocation fails)
VM_MIGRATE_TRANSIENT = 70  # migration attempts failed with a transient -EAGAIN (T_MIGRATE_EAGAIN_PPM)
VM_THP_SPLIT_PAGE = 71  # thp_split_page: THPs split because no order-9 migration target was had
# Android __GFP_CMA history (issue 14), slots 72..84 (after the old NR_VM):
VM_NON_CMA_TO_CMA_ALLOC = 72  # pages of non-CMA pageblocks handed to ALLOC_CMA requests while the zone had free CMA
# Per request class, counted in rmqueue() (class 0: ALLOC_CMA, 1: MOVABLE without ALLOC_CMA, 2: other types):
VM_RQ_SERVED = 73  # 3 slots: rmqueue() calls that returned a page
VM_RQ_PCP_HITS = 76  # 3 slots: ... served from a per-CPU list without taking the zone lock
VM_RQ_ZONE_LOCK = 79  # 3 slots: zone->lock trips taken inside rmqueue() (refills and buddy attempts)
VM_RQ_CMA_TO_NON_CMA = 82  # 3 slots: pages of CMA blocks served to the class (class 0 is always 0)
VM_THP_MIGRATION_SUCCESS = 85  # thp_migration_success: large folios migrated whole
NR_VM = 88

# --- policy record (PL_* slots after C[H_POL]) --------------------------------------------
PL_VERSION = 0  # 601 = linux-6.1 rules, 618 = linux-6.18 rules
PL_CMA_NUM = 1  # CMA balancing: CMA first if free_cma > free * NUM / DEN
PL_CMA_DEN = 2
PL_NOFRAGMENT = 3  # 1 = kernel rule (alloc_flags_nofragment), 0 = never
PL_DEFRAG_MODE = 4  # vm.defrag_mode (v6.15+): NOFRAGMENT always
PL_BOOST_FACTOR = 5  # watermark_boost_factor
PL_NR_PCP_LISTS = 6
PL_LONGTERM_MIGRATE = 7  # 1: FOLL_LONGTERM migrates pages out of CMA first (mainline); 0: the bug
PL_CMA_GFP_REQUIRED = 84  # Android: ALLOC_CMA only for MOVABLE requests carrying __GFP_CMA
PL_CMA_FIRST_BUDDY = 85  # Android: rmqueue_buddy() tries the CMA lists first for ALLOC_CMA
PL_CMA_FIRST_RMQUEUE = 86  # 2020 patch: __rmqueue() (refills too) takes CMA first for ALLOC_CMA
PL_CMA_STAGE = 87  # mainline: __rmqueue() falls back to CMA after the requested type (0: restricted)
PL_CMA_BALANCE_MODE = 88  # 0 free_cma > free*n/d; 1 also when non-CMA free < low; 2 (free - low)*n/d
PL_PIN_ISOLATED_MIGRATE = 89  # candidate: a short pin of a page in an isolated block migrates it first
PL_SHORT_PIN_MIGRATES_CMA = 90  # candidate: a short pin of a CMA page migrates it out of CMA first
PL_PCP_SKIP_MOVABLE_NO_CMA = 91  # 2020 patch/v5.9+: MOVABLE without ALLOC_CMA skips the per-CPU lists
PL_CMA_ONLY_RMQUEUE = 92  # 2020 patch/ACK 5.4 __rmqueue_cma(): ALLOC_CMA MOVABLE refills and buddy take CMA only
PL_PCP_FAIL_NO_BUDDY = 93  # <= v5.10 rmqueue(): an order-0 per-CPU miss returns NULL (goto out), no buddy try
PL_PCP_PINDEX = 8  # order_to_pindex table: NR_PAGE_ORDERS * MIGRATE_TYPES slots (-1: not PCP)
PL_FALLBACK = PL_PCP_PINDEX + NR_PAGE_ORDERS * MIGRATE_TYPES  # fallbacks[3][2]: slots 74..79
PL_SIZE = 96

# --- tunables block (T_* slots after C[H_PARAM]) ---------------------------------------------
T_MIGRATE_COST_NS = 0  # simulated cost of migrating one base page
T_KSWAPD_RATE = 1  # pages kswapd reclaims per simulated second
T_KSWAPD_PERIOD_NS = 2  # kswapd wakes every period while the zone is below its high mark
T_SWAP_FREE = 3  # swap slots left (pages)
T_RECLAIM_ENABLED = 5
T_COMPACTION_ENABLED = 6
T_THP_DEFRAG = 7  # 0 never, 1 always, 2 defer, 3 defer+madvise, 4 madvise
T_KCOMPACTD_PERIOD_NS = 8
T_CLEAN_DROP_COST_NS = 9  # simulated cost of dropping a clean page (reclaim)
T_SWAP_COST_NS = 10  # simulated cost of writing an anonymous page to swap/zram
T_DRAIN_COST_NS = 11  # simulated cost of drain_all_pages (IPIs to every CPU)
T_ISOLATE_COST_NS = 12  # simulated cost of isolating one pageblock
T_OOM_KILLER = 13  # 1: out_of_memory() kills a task and the allocation retries; 0: it fails (counted)
T_MIGRATE_EAGAIN_PPM = 15  # chance (per million) that one migration attempt fails with -EAGAIN
# Cost model of alloc_contig_range() (docs/model.md "Cost model"; zero/neutral by default):
T_CONTIG_CALL_COST_NS = 16  # fixed cost of one alloc_contig_range() call (set-up, lru_add_drain_all, undo)
T_SCAN_COST_NS = 17  # per pfn walked by isolate_migratepages_range()
T_TEST_COST_NS = 18  # per pfn checked by test_pages_isolated()
T_MIGRATE_FAIL_COST_NS = 19  # one failed (-EAGAIN) folio migration attempt
T_THP_COST_PPM = 20  # cost of one base page of a large folio relative to a 4 KiB folio, per million
NR_T = 24

# --- pinner table (PNS slots each, after C[H_PINNERS]) ---------------------------------------
PN_HOLD_NS = 0  # how long each pin is held
PN_GAP_NS = 1  # pause of a pinner thread between pins
PN_LONGTERM = 2  # FOLL_LONGTERM pins
PN_CMA_ONLY = 3  # only pin pages in CMA pageblocks
PN_THREADS = 4  # concurrent pinner threads (closed loop)
PN_START_NS = 5
PN_PINS = 6  # pins taken
PN_MISSES = 7  # attempts that found no pinnable page
PN_FAILS = 8  # pins refused (e.g. long-term migration failed)
PN_PINNED_IN_CMA = 9  # pins that landed on a CMA pageblock
PN_PICK = 10  # target choice: PICK_ANY (cma_only filter), PICK_CANDIDATES or PICK_FILL
PN_JITTER_NS = 11  # the hold is uniform in [hold, hold + jitter] (usleep_range(H, H + H/8))
PN_END_NS = 12  # threads stop pinning at this time (0: never)
PNS = 16

PICK_ANY = 0  # a random allocated movable block (optionally CMA pageblocks only)
PICK_CANDIDATES = 1  # a random handle of the candidate list (fixed at the last rescan)
PICK_FILL = 2  # a random live anonymous handle (any fill page)

# --- timers: payload = kind << 56 | tag << 32 | pfn ------------------------------------------
TIMER_UNPIN = 1  # tag = pinner id + 1 (0: no pinner)
TIMER_PIN = 2  # tag = pinner id + 1

# --- trace records (TR int64 slots each) ---------------------------------------------------
TR_SIZE = 10  # kind, time, cpu, pfn, f0, f1, f2, f3, f4, f5
TR_MM_PAGE_ALLOC = 1  # pfn(-1 = failed), order, migratetype, gfp
TR_MM_PAGE_FREE = 2  # pfn, order
TR_MM_PAGE_ALLOC_ZONE_LOCKED = 3  # pfn, order, migratetype, percpu_refill
TR_MM_PAGE_PCPU_DRAIN = 4  # pfn, order, migratetype
TR_MM_PAGE_ALLOC_EXTFRAG = 5  # pfn, alloc_order, fallback_order, alloc_mt, fallback_mt, change_ownership
TR_MM_MIGRATE_PAGES = 6  # (pfn unused) nr_succeeded, nr_failed, mode, reason
TR_TEST_PAGES_ISOLATED = 7  # start_pfn, end_pfn, fin_pfn
TR_COMPACTION_BEGIN = 8  # zone_start, migrate_pfn, free_pfn, zone_end, sync
TR_COMPACTION_END = 9  # zone_start, migrate_pfn, free_pfn, zone_end, sync, status

MIGRATE_ASYNC = 0
MIGRATE_SYNC_LIGHT = 1
MIGRATE_SYNC = 2
MR_COMPACTION = 0
MR_CONTIG_RANGE = 7
MR_LONGTERM_PIN = 8
