"""Kernel versions and vendor variants as data records (design.md, decision 3).

A `Policy` is what the compiled core reads from its policy block: the rule-set version,
the fallback table, the per-CPU list index map (order_to_pindex), the CMA balancing
ratio and a few switches. `POLICIES` is the registry that `cmasim policies` lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Policy:
    """One allocator variant, as data. Every field names the kernel rule it stands for."""

    name: str
    summary: str
    version: int  # rule set: 601 (linux-6.1) or 618 (linux-6.18)
    kernel: str  # the kernel the rules come from, for reports
    cma_balance: tuple[int, int] = (1, 2)  # __rmqueue(): CMA first if free_cma > free * n / d
    nofragment: bool = True  # alloc_flags_nofragment()
    defrag_mode: bool = False  # vm.defrag_mode (v6.15+)
    watermark_boost_factor: int = 15000  # vm.watermark_boost_factor
    fallbacks: tuple = MAINLINE_FALLBACKS
    pcp_pindex: tuple = field(default_factory=mainline_pindex)
    nr_pcp_lists: int = 14  # NR_PCP_LISTS
    longterm_pin_migrates: bool = True  # mm/gup.c check_and_migrate_movable_pages()
    cma_retry: tuple[int, int] = (0, 0)  # vendor cma_alloc() retry: (rounds, sleep ms); mainline none

    def zoneinfo_flavour(self) -> str:
        return "6.1" if self.version < 607 else "6.18"


POLICIES: dict[str, Policy] = {
    p.name: p
    for p in (
        Policy(
            name="linux-6.18",
            summary="mainline v6.18: claim/steal split, PCP high auto-tuning, CMA first when over half of free",
            version=618,
            kernel="6.18",
        ),
        Policy(
            name="linux-6.1",
            summary="Linux 6.1 (Debian 6.1.y): 6.1 fallback with free-page movement, fixed PCP high, free_factor",
            version=601,
            kernel="6.1",
        ),
    )
}


class UnknownPolicy(KeyError):
    pass


def get_policy(name: str) -> Policy:
    """The registered policy called `name`; UnknownPolicy lists the valid names."""
    try:
        return POLICIES[name]
    except KeyError:
        raise UnknownPolicy(f"unknown policy {name!r}; known: {', '.join(sorted(POLICIES))}") from None
