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


def pindex_table(max_order: int, cma_pcp: bool, nr_thp: int) -> tuple[tuple[int, ...], ...]:
    """An order_to_pindex() table: which per-CPU list (order, migratetype) uses, -1 for none.

    max_order: highest low order with lists (0 before v5.13 "mm/page_alloc: allow high-order
    pages to be stored on the per-cpu lists"; 3 = PAGE_ALLOC_COSTLY_ORDER after it).
    cma_pcp: ACK "ANDROID: mm: add cma pcp list" — MIGRATE_CMA below MIGRATE_PCPTYPES (4 lists
    per order: U 0, M 1, R 2, CMA 3). Without it CMA (and always HIGHATOMIC) blocks are freed to
    the MOVABLE list (free_unref_page_commit(): types >= MIGRATE_PCPTYPES use MOVABLE's list).
    nr_thp: THP-order lists after the low-order ones — 0 none (v5.10 and earlier); 1 one list for
    every type (v5.13..v6.9 NR_PCP_THP 1, ACK 6.6); 2 non-movable / movable, CMA on the movable
    one (v6.10+ and ACK 6.18 `movable |= mt == MIGRATE_CMA`); 3 as 2 plus a CMA THP list (the
    RFC "Add PCP list for THP CMA"; on a one-list base: shared list plus CMA list).
    ISOLATE and other orders never have a list.
    """
    per = 4 if cma_pcp else 3
    slot = {MIGRATE_UNMOVABLE: 0, MIGRATE_MOVABLE: 1, MIGRATE_RECLAIMABLE: 2, MIGRATE_HIGHATOMIC: 1,
            MIGRATE_CMA: 3 if cma_pcp else 1}
    low = per * (max_order + 1)
    table = []
    for order in range(NR_PAGE_ORDERS):
        row = [-1] * MIGRATE_TYPES
        for mt, s in slot.items():
            if order <= max_order:
                row[mt] = per * order + s
            elif order == PAGEBLOCK_ORDER and nr_thp:
                movable = mt in (MIGRATE_MOVABLE, MIGRATE_CMA, MIGRATE_HIGHATOMIC)
                if nr_thp == 1:
                    row[mt] = low
                elif nr_thp == 2:
                    row[mt] = low + (1 if movable else 0)
                elif mt == MIGRATE_CMA:  # the RFC's own CMA THP list
                    row[mt] = low + 2
                else:
                    row[mt] = low + (1 if movable else 0)
        table.append(tuple(row))
    return tuple(table)


def rfc_on_one_thp_list(max_order: int = PAGE_ALLOC_COSTLY_ORDER) -> tuple[tuple[int, ...], ...]:
    """The RFC's CMA THP list on ACK 6.6's single shared THP list: every non-CMA THP on the
    shared list (16), CMA THPs on their own (17)."""
    table = [list(r) for r in pindex_table(max_order, True, 1)]
    table[PAGEBLOCK_ORDER][MIGRATE_CMA] = table[PAGEBLOCK_ORDER][MIGRATE_UNMOVABLE] + 1
    return tuple(tuple(r) for r in table)


def mainline_pindex() -> tuple[tuple[int, ...], ...]:
    """order_to_pindex() with two THP lists (v6.10+, backported to 6.1.y).

    Orders 0..3: 3*order + mt; HIGHATOMIC and CMA blocks are freed to the MOVABLE list
    (free_frozen_pages() maps types above RECLAIMABLE to MOVABLE). THP order: 12 for
    non-movable, 13 for movable. ISOLATE and other orders: -1 (no per-CPU list).
    """
    return pindex_table(PAGE_ALLOC_COSTLY_ORDER, False, 2)


def ack_pindex(cma_pcp: bool, thp_cma_list: bool) -> tuple[tuple[int, ...], ...]:
    """Android common kernel 6.18 order_to_pindex() ("ANDROID: mm: add cma pcp list").

    With the CMA list (MIGRATE_PCPTYPES = 4): orders 0..3 use 4*order + {U 0, M 1, R 2,
    CMA 3}; HIGHATOMIC frees to MOVABLE. THP: 16 non-movable, 17 movable — CMA THPs share
    the movable THP list — or, with the RFC "Add PCP list for THP CMA", their own list 18.
    Without the CMA list: mainline's layout, CMA on the MOVABLE lists.
    """
    return pindex_table(PAGE_ALLOC_COSTLY_ORDER, cma_pcp, 3 if thp_cma_list else 2)


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
    cma_first_rmqueue: bool = False  # __rmqueue(): CMA first for ALLOC_CMA, then fallback (unused since issue 14)
    cma_only_rmqueue: bool = False  # 2020 patch / ACK 5.4 __rmqueue_cma(): __GFP_CMA refills and buddy take CMA only
    pcp_skip_movable_without_cma: bool = False  # 2020 patch rmqueue(): MOVABLE without __GFP_CMA bypasses the pcp
    pcp_fail_no_buddy: bool = False  # <= v5.10 rmqueue(): order-0 per-CPU miss -> NULL for the zone (goto out)
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


# Android __GFP_CMA, era by era (docs/model.md "Android records" names the source read for each).
# Common to all: ALLOC_CMA only for MOVABLE + __GFP_CMA (current_alloc_flags /
# gfp_to_alloc_flags_cma), no half-free balancing and no CMA stage in __rmqueue().
_RESTRICTED = dict(cma_balance=(0, 1), cma_gfp_required=True, cma_stage=False)
# The 5.4/5.10-era records run on the simulator's 6.1 rule set (fixed pcp->high + free_factor, 6.1
# fallback): the nearest it has; 5.10's own batch/high sizing and fallback details are not modelled.
_OLD_CORE = dict(version=601)

_ANDROID_2020 = Policy(
    name="android-2020", **_RESTRICTED, **_OLD_CORE,
    kernel="LKML 'cma: redirect page allocation to CMA' (Nov 2020, 5.10-rc1 base) on 6.1 core rules",
    cma_only_rmqueue=True, pcp_skip_movable_without_cma=True, pcp_fail_no_buddy=True,
    gfp_cma_owners=("anon0",), pcp_pindex=pindex_table(0, False, 0), nr_pcp_lists=3,
    summary="the posted 2020 __GFP_CMA series (mm/page_alloc.c rmqueue, __rmqueue_cma, rmqueue_bulk): "
            "order-0 per-CPU lists only, no CMA list; __GFP_CMA refills take CMA only onto the MOVABLE list; "
            "MOVABLE requests without __GFP_CMA skip the per-CPU lists (zone lock every time); an order-0 "
            "per-CPU miss fails the zone; only order-0 anonymous faults carry __GFP_CMA")
_ANDROID_54 = replace(
    _ANDROID_2020, name="android-5.4", pcp_skip_movable_without_cma=False,
    kernel="ACK android11-5.4 'ANDROID: GKI: cma: redirect page allocation to CMA' (b9d3d8f1e991), "
           "rmqueue inferred, on 6.1 core rules",
    summary="ACK android11-5.4 interim: as android-2020 but on the 5.4 base rmqueue() (inferred from msm-5.4: "
            "no per-CPU skip), so page cache shares the MOVABLE list that __GFP_CMA refills fill with CMA")
_ANDROID_510 = Policy(
    name="android-5.10", **_RESTRICTED, **_OLD_CORE,
    kernel="ACK android12-5.10 mm/page_alloc.c (GrapheneOS kernel_common-5.10) on 6.1 core rules",
    cma_first_buddy=True, gfp_cma_owners=("anon0",), pcp_pindex=pindex_table(0, True, 0), nr_pcp_lists=4,
    migratetype_numbering="ack",
    summary="ACK 5.10: the per-CPU MIGRATE_CMA list (order 0 only) refilled from CMA only, then the request's "
            "own list; rmqueue_buddy() __rmqueue_cma() first; no per-CPU skip; order-0 anonymous faults carry "
            "__GFP_CMA")
_ANDROID_66 = Policy(
    name="android-6.6", **_RESTRICTED, **_OLD_CORE,
    kernel="ACK android15-6.6 mm/page_alloc.c (order_to_pindex: one THP list) on 6.1 core rules",
    cma_first_buddy=True, gfp_cma_owners=("anon", "thp"), pcp_pindex=pindex_table(3, True, 1), nr_pcp_lists=17,
    migratetype_numbering="ack",
    summary="ACK 6.6: CMA per-CPU lists at orders 0-3; ONE THP-order list shared by every migratetype, so an "
            "UNMOVABLE or plain MOVABLE THP request can receive a CMA THP")
_ANDROID_618 = Policy(
    name="android-6.18", **_RESTRICTED, version=618, kernel="ACK android17-6.18 mm/page_alloc.c (6.18 rules)",
    cma_first_buddy=True, gfp_cma_owners=("anon", "thp"), pcp_pindex=ack_pindex(True, False), nr_pcp_lists=18,
    migratetype_numbering="ack",
    summary="ACK 6.18 __GFP_CMA: only __GFP_CMA allocations may use CMA and take it first; a per-CPU "
            "MIGRATE_CMA list for orders 0-3; CMA THPs share the MOVABLE THP list")


def _alias(target: Policy, name: str, note: str = "") -> Policy:
    return replace(target, name=name, summary=f"alias of {target.name}{note}: {target.summary}")


_ERAS = (
    _ANDROID_2020, _ANDROID_54, _ANDROID_510, _ANDROID_66,
    replace(_ANDROID_66, name="android-6.6-no-cma-pcp", pcp_pindex=pindex_table(3, False, 1), nr_pcp_lists=13,
            migratetype_numbering="mainline",
            summary="what-if (issue 10): ACK 6.6 with cma_has_pcplist() off — CMA pages on the MOVABLE lists; a "
                    "__GFP_CMA request pops the shared list, refills it from CMA only, then by __rmqueue(). Not a "
                    "shipping state: one static key backs both restrict_cma_redirect and cma_has_pcplist()"),
    replace(_ANDROID_66, name="android-6.6+rfc-thp-cma", pcp_pindex=rfc_on_one_thp_list(), nr_pcp_lists=18,
            summary="android-6.6 plus the RFC 'Add PCP list for THP CMA' on 6.6's single THP list: CMA THPs on "
                    "their own list, every other THP on the shared one"),
    _ANDROID_618,
    replace(_ANDROID_618, name="android-6.18-no-cma-pcp", pcp_pindex=ack_pindex(False, False), nr_pcp_lists=14,
            migratetype_numbering="mainline",
            summary="what-if: ACK 6.18 with cma_has_pcplist() off — CMA pages on the MOVABLE lists; a __GFP_CMA "
                    "request pops the shared list, refills it from CMA only, then by __rmqueue(). Not a shipping "
                    "state"),
    replace(_ANDROID_618, name="android-6.18+rfc-thp-cma", pcp_pindex=ack_pindex(True, True), nr_pcp_lists=19,
            summary="android-6.18 plus the RFC 'Add PCP list for THP CMA': a separate THP-order per-CPU list "
                    "for CMA pages"),
)
_BY_NAME = {p.name: p for p in _ERAS}

POLICIES: dict[str, Policy] = {
    p.name: p
    for p in (
        Policy(name="linux-6.18", version=618, kernel="6.18",
               summary="mainline v6.18: CMA on the MOVABLE pcp lists, movable allocations may use CMA "
                       "(CMA first when free CMA > half of free), claim/steal split, pcp high auto-tuning"),
        Policy(name="linux-6.1", version=601, kernel="6.1",
               summary="Linux 6.1 (Debian 6.1.y): 6.1 fallback with free-page movement, fixed pcp high, "
                       "free_factor, cached pcp migratetypes"),
        *_ERAS,
        _alias(_ANDROID_618, "android"),
        _alias(_BY_NAME["android-6.18+rfc-thp-cma"], "android+rfc-thp-cma"),
        _alias(_BY_NAME["android-6.18-no-cma-pcp"], "android-no-cma-pcp",
               " (before issue 14 this name ran a record that matched no kernel; the 2020 design is android-2020)"),
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


class PolicyModifierError(UnknownPolicy, ValueError):
    """A modifier refused for its base: given twice, contradicting another, or changing nothing.
    str() is the one-line message (no KeyError quoting)."""

    def __str__(self) -> str:
        return str(self.args[0])


# Fields of the mainline half-free CMA balancing rule in __rmqueue(); Android's restricted design
# (restrict_cma_redirect) has no such rule, so modifiers of it change nothing there.
_BALANCE_FIELDS = frozenset({"cma_balance", "cma_balance_mode"})


def _known() -> str:
    return (f"policies: {', '.join(POLICIES)}; modifiers (append with '+'): {', '.join(MODIFIERS)}")


def get_policy(name: str) -> Policy:
    """The policy called `name`: a registered record, optionally followed by '+modifier's.

    Unknown names raise UnknownPolicy listing the valid ones. A modifier given twice, one that
    contradicts an earlier one, and one that changes nothing for its base raise
    PolicyModifierError (a ValueError too) with a one-line reason.
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
    seen: list[str] = []
    for mod in mods:
        if mod not in MODIFIERS:
            raise UnknownPolicy(f"unknown policy modifier {mod!r} in {name!r}; {_known()}")
        if mod in seen:
            raise PolicyModifierError(f"{name!r}: modifier +{mod} is given twice")
        seen.append(mod)
        sets = MODIFIERS[mod][1]
        if base.cma_gfp_required and _BALANCE_FIELDS & set(sets):
            raise PolicyModifierError(
                f"{name!r}: +{mod} changes nothing on {base.name}: no half-free CMA balancing while "
                f"__GFP_CMA restricts CMA")
        for k, v in sets.items():
            if k in fields and fields[k] != v:
                raise PolicyModifierError(f"{name!r}: {origin[k]} and {mod} contradict each other ({k})")
        if all(fields.get(k, getattr(base, k)) == v for k, v in sets.items()):
            by = ", ".join(sorted({"+" + origin[k] for k in sets if k in origin})) or base.name
            raise PolicyModifierError(f"{name!r}: +{mod} changes nothing: {by} already sets "
                                      f"{', '.join(f'{k}={v!r}' for k, v in sets.items())}")
        for k, v in sets.items():
            fields[k] = v
            origin[k] = mod
    if base.cma_gfp_required and "gfp_cma_owners" in fields and fields["gfp_cma_owners"] != base.gfp_cma_owners:
        raise PolicyModifierError(f"{name!r}: {base.name} already decides which allocations carry __GFP_CMA; "
                                  f"{origin['gfp_cma_owners']} contradicts it")
    return replace(base, name=name, summary=base.summary + " + " + ", ".join(mods), **fields)


def describe_all() -> list[tuple[str, str]]:
    out = [(p.name, p.summary) for p in POLICIES.values()]
    out += [(f"+{m}", d) for m, (d, _) in MODIFIERS.items()]
    return out
