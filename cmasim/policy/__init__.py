"""Kernel versions, vendor variants and candidate fixes as data records (design.md, decision 3).

A `Policy` is what the compiled core reads from its policy block: the rule-set version,
the fallback table, the per-CPU list index map (order_to_pindex), the CMA rules and a few
switches. `POLICIES` holds the complete records `cmasim policies` lists; `MODIFIERS` are
candidate fixes that apply on top of a base record: `linux-6.18+cma-retry+pin-pending-migration`.
Two modifiers that set the same field differently are refused with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from cmasim.mm.mmzone import (
    MIGRATE_CMA, MIGRATE_HIGHATOMIC, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE, MIGRATE_TYPES,
    MIGRATE_UNMOVABLE, NR_PAGE_ORDERS, PAGE_ALLOC_COSTLY_ORDER, PAGEBLOCK_ORDER,
)

# mm/page_alloc.c fallbacks[MIGRATE_PCPTYPES][MIGRATE_PCPTYPES - 1]
MAINLINE_FALLBACKS = (
    (MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE),  # UNMOVABLE
    (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE),  # MOVABLE
    (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE),  # RECLAIMABLE
)


def mainline_pindex() -> tuple[tuple[int, ...], ...]:
    """order_to_pindex() with two THP lists (v6.10+, backported to 6.1.y).

    Orders 0..3: 3*order + mt; HIGHATOMIC and CMA blocks are freed to the MOVABLE list
    (free_frozen_pages() maps types above RECLAIMABLE to MOVABLE). THP order: 12 for
    non-movable, 13 for movable. ISOLATE and other orders: -1 (no per-CPU list).
    """
    table = []
    for order in range(NR_PAGE_ORDERS):
        row = [-1] * MIGRATE_TYPES
        for mt in (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE, MIGRATE_HIGHATOMIC, MIGRATE_CMA):
            list_mt = MIGRATE_MOVABLE if mt > MIGRATE_RECLAIMABLE else mt
            if order <= PAGE_ALLOC_COSTLY_ORDER:
                row[mt] = 3 * order + list_mt
            elif order == PAGEBLOCK_ORDER:
                row[mt] = 12 + (1 if list_mt == MIGRATE_MOVABLE else 0)
        table.append(tuple(row))
    return tuple(table)


def ack_pindex(cma_pcp: bool, thp_cma_list: bool) -> tuple[tuple[int, ...], ...]:
    """Android common kernel order_to_pindex() ("ANDROID: mm: add cma pcp list").

    With the CMA list (MIGRATE_PCPTYPES = 4): orders 0..3 use 4*order + {U 0, M 1, R 2,
    CMA 3}; HIGHATOMIC frees to MOVABLE. THP: 16 non-movable, 17 movable — CMA THPs share
    the movable THP list — or, with the RFC "Add PCP list for THP CMA", their own list 18.
    Without the CMA list (the 2020 state): mainline's layout, CMA on the MOVABLE lists.
    """
    if not cma_pcp:
        return mainline_pindex()
    table = []
    slot = {MIGRATE_UNMOVABLE: 0, MIGRATE_MOVABLE: 1, MIGRATE_RECLAIMABLE: 2, MIGRATE_CMA: 3, MIGRATE_HIGHATOMIC: 1}
    for order in range(NR_PAGE_ORDERS):
        row = [-1] * MIGRATE_TYPES
        for mt, s in slot.items():
            if order <= PAGE_ALLOC_COSTLY_ORDER:
                row[mt] = 4 * order + s
            elif order == PAGEBLOCK_ORDER:
                if mt == MIGRATE_CMA and thp_cma_list:
                    row[mt] = 18
                else:
                    row[mt] = 17 if mt in (MIGRATE_MOVABLE, MIGRATE_CMA, MIGRATE_HIGHATOMIC) else 16
        table.append(tuple(row))
    return tuple(table)


@dataclass(frozen=True)
class Policy:
    """One allocator variant, as data. Every field names the kernel rule it stands for."""

    name: str
    summary: str
    version: int  # rule set: 601 (linux-6.1) or 618 (linux-6.18)
    kernel: str  # the kernel the rules come from, for reports
    cma_balance: tuple[int, int] = (1, 2)  # __rmqueue(): CMA first if free_cma > free * n / d (n = 0: off)
    cma_balance_mode: int = 0  # 0 mainline; 1 "use CMA first" recheck; 2 subtract the low watermark
    cma_gfp_required: bool = False  # Android: ALLOC_CMA needs __GFP_CMA (restrict_cma_redirect)
    cma_first_buddy: bool = False  # Android: rmqueue_buddy() -> __rmqueue_cma_fallback() first
    cma_first_rmqueue: bool = False  # 2020 patch: __rmqueue_cma() for __GFP_CMA, refills included
    cma_stage: bool = True  # mainline __rmqueue() RMQUEUE_CMA stage; off while Android restricts CMA
    gfp_cma_owners: tuple[str, ...] = ()  # allocations that carry __GFP_CMA: "anon", "thp", "file"
    nofragment: bool = True  # alloc_flags_nofragment()
    defrag_mode: bool = False  # vm.defrag_mode (v6.15+)
    watermark_boost_factor: int = 15000  # vm.watermark_boost_factor
    fallbacks: tuple = MAINLINE_FALLBACKS
    pcp_pindex: tuple = field(default_factory=mainline_pindex)
    nr_pcp_lists: int = 14  # NR_PCP_LISTS
    longterm_pin_migrates: bool = True  # mm/gup.c check_and_migrate_movable_pages()
    pin_isolated_migrate: bool = False  # candidate: pins of pages in isolated blocks migrate first
    short_pin_migrates_cma: bool = False  # candidate: short pins of CMA pages migrate out first
    cma_retry: tuple[int, int] = (0, 0)  # vendor cma_alloc() retry: (rounds, sleep ms); mainline none
    migratetype_numbering: str = "mainline"  # "ack": CMA printed as 3, HIGHATOMIC as 4

    def zoneinfo_flavour(self) -> str:
        return "6.1" if self.version < 607 else "6.18"


_ANDROID = dict(version=618, kernel="android (ACK) on 6.18 rules", cma_balance=(0, 1), cma_gfp_required=True,
                cma_first_buddy=True, cma_stage=False, gfp_cma_owners=("anon", "thp"),
                migratetype_numbering="ack")

POLICIES: dict[str, Policy] = {
    p.name: p
    for p in (
        Policy(name="linux-6.18", version=618, kernel="6.18",
               summary="mainline v6.18: CMA on the MOVABLE pcp lists, movable allocations may use CMA "
                       "(CMA first when free CMA > half of free), claim/steal split, pcp high auto-tuning"),
        Policy(name="linux-6.1", version=601, kernel="6.1",
               summary="Linux 6.1 (Debian 6.1.y): 6.1 fallback with free-page movement, fixed pcp high, "
                       "free_factor, cached pcp migratetypes"),
        Policy(name="android", **_ANDROID, pcp_pindex=ack_pindex(True, False), nr_pcp_lists=18,
               summary="ACK __GFP_CMA: only __GFP_CMA allocations may use CMA and take it first; a per-CPU "
                       "MIGRATE_CMA list for orders 0-3; CMA THPs share the MOVABLE THP list"),
        Policy(name="android-no-cma-pcp", **{**_ANDROID, "cma_first_buddy": False},
               cma_first_rmqueue=True, pcp_pindex=ack_pindex(False, False), nr_pcp_lists=14,
               summary="the 2020 __GFP_CMA patch without the CMA pcp list: __GFP_CMA refills put CMA pages "
                       "on the shared MOVABLE lists"),
        Policy(name="android+rfc-thp-cma", **_ANDROID, pcp_pindex=ack_pindex(True, True), nr_pcp_lists=19,
               summary="android plus the RFC 'Add PCP list for THP CMA': a separate THP-order per-CPU "
                       "list for CMA pages"),
        Policy(name="longterm-pin-on-cma-bug", version=618, kernel="6.18 with the long-term pin bug",
               longterm_pin_migrates=False,
               summary="linux-6.18 but FOLL_LONGTERM pins stay on CMA pages (the bug fixed upstream)"),
    )
}

# Candidate fixes and knobs, applied on top of a base policy with '+'.
MODIFIERS: dict[str, tuple[str, dict]] = {
    "pin-pending-migration": ("a page in an isolated pageblock is migrated before a new short-term pin "
                              "(the pinner gets the migrated page)", {"pin_isolated_migrate": True}),
    "short-pin-migrates-cma": ("a short-term pin of a CMA page first migrates it out of CMA, like "
                               "FOLL_LONGTERM, at a cost to the pinner", {"short_pin_migrates_cma": True}),
    "cma-retry": ("vendor sleep-and-retry in cma_alloc(): 5 rounds, 100 ms apart, while -EBUSY",
                  {"cma_retry": (5, 100)}),
    "use-cma-first": ("the watermark recheck proposal: movable allocations also take CMA first while "
                      "non-CMA free memory is below the low watermark", {"cma_balance_mode": 1}),
    "cma-balance-wmark-low": ("subtract the low watermark from free memory before the half-free comparison",
                              {"cma_balance_mode": 2}),
    "cma-ratio": ("CMA first when free CMA > 3/4 of free memory (the Raspberry Pi 12/16 tunable)",
                  {"cma_balance": (3, 4)}),
    "gcma-like": ("CMA lent only to clean page cache (drop-at-once); pins of CMA pages migrate out first",
                  {"cma_gfp_required": True, "gfp_cma_owners": ("file",), "short_pin_migrates_cma": True}),
}


class UnknownPolicy(KeyError):
    pass


def _known() -> str:
    return (f"policies: {', '.join(POLICIES)}; modifiers (append with '+'): {', '.join(MODIFIERS)}")


def get_policy(name: str) -> Policy:
    """The policy called `name`: a registered record, optionally followed by '+modifier's.

    Unknown names raise UnknownPolicy listing the valid ones; contradicting modifiers are
    refused with the reason.
    """
    if name in POLICIES:
        return POLICIES[name]
    parts = name.split("+")
    base = None
    for k in range(len(parts), 0, -1):  # the longest registered prefix ("android+rfc-thp-cma+cma-retry")
        cand = "+".join(parts[:k])
        if cand in POLICIES:
            base, mods = POLICIES[cand], parts[k:]
            break
    if base is None:
        raise UnknownPolicy(f"unknown policy {name!r}; {_known()}")
    fields: dict = {}
    origin: dict = {}
    for mod in mods:
        if mod not in MODIFIERS:
            raise UnknownPolicy(f"unknown policy modifier {mod!r} in {name!r}; {_known()}")
        for k, v in MODIFIERS[mod][1].items():
            if k in fields and fields[k] != v:
                raise UnknownPolicy(f"{name!r}: {origin[k]} and {mod} contradict each other ({k})")
            fields[k] = v
            origin[k] = mod
    if base.cma_gfp_required and "gfp_cma_owners" in fields and fields["gfp_cma_owners"] != base.gfp_cma_owners:
        raise UnknownPolicy(f"{name!r}: {base.name} already decides which allocations carry __GFP_CMA; "
                            f"{origin['gfp_cma_owners']} contradicts it")
    return replace(base, name=name, summary=base.summary + " + " + ", ".join(mods), **fields)


def describe_all() -> list[tuple[str, str]]:
    out = [(p.name, p.summary) for p in POLICIES.values()]
    out += [(f"+{m}", d) for m, (d, _) in MODIFIERS.items()]
    return out
