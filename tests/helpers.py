"""Shared helpers for the test suite: machine construction, GFP shorthands and raw-state views.

Everything here reads the packed state (`Machine.S` / `Machine.C`) the way the core does, so
tests can check list order, page words and per-CPU lists without going through the code
under test.
"""

from __future__ import annotations

import inspect
from dataclasses import fields

import numpy as np

from cmasim import engine_core
from cmasim import gfp as g
from cmasim.machine import Machine, MachineConfig
from cmasim.mm import mmzone as mz
from cmasim.policy import get_policy

POLICIES = ("linux-6.18", "linux-6.1")

# GFP masks for the four kinds of request the tests make.
MOVABLE = g.GFP_HIGHUSER_MOVABLE
UNMOVABLE = g.GFP_KERNEL
RECLAIMABLE = g.GFP_KERNEL | g.BITS["__GFP_RECLAIMABLE"]
THP = g.GFP_TRANSHUGE_LIGHT

U, M, R, CMA = mz.MIGRATE_UNMOVABLE, mz.MIGRATE_MOVABLE, mz.MIGRATE_RECLAIMABLE, mz.MIGRATE_CMA

# Small layout used by most hand-checked tests: DMA32 [0, 4096), Normal [4096, 12288).
SMALL = [("DMA32", 4096), ("Normal", 8192)]


def make_machine(zones=SMALL, policy: str = "linux-6.18", seed: int = 1, **kw) -> Machine:
    """A Machine with the plain page allocator only.

    If the model has grown background reclaim/compaction switches, they are turned off so
    that hand-computed expectations only depend on the buddy/PCP/fallback rules.
    """
    names = {f.name for f in fields(MachineConfig)}
    for k in ("reclaim", "compaction"):
        if k in names:
            kw.setdefault(k, False)
    return Machine(MachineConfig(zones=list(zones), **kw), get_policy(policy), seed=seed)


def zone_index(m: Machine, name: str) -> int:
    return m.zone_names.index(name)


def zone_range(m: Machine, z: int) -> tuple[int, int]:
    return m.zone_field(z, mz.Z_START), m.zone_field(z, mz.Z_END)


def buddyinfo(m: Machine, z: int) -> list[int]:
    """free_area[order].nr_free of zone z, orders 0..10."""
    return [m.zone_field(z, mz.Z_AREA + o) for o in range(mz.NR_PAGE_ORDERS)]


def free_list_id(m: Machine, z: int, order: int, mt: int) -> int:
    return z * int(m.C[mz.H_LPZ]) + order * mz.MIGRATE_TYPES + mt


def pcp_list_id(m: Machine, z: int, cpu: int, pindex: int) -> int:
    return z * int(m.C[mz.H_LPZ]) + mz.NR_BUDDY_LISTS + cpu * mz.NR_PCP_LISTS_MAX + pindex


def walk_list(m: Machine, lst: int) -> list[int]:
    """Pages on list `lst` from head to tail, following the NEXT links of the page records."""
    S = m.S
    s = int(m.C[mz.H_N]) + lst
    out = []
    cur = int(S[mz.NODE_W * s + mz.F_NEXT])
    while cur != s:
        out.append(cur)
        cur = int(S[mz.NODE_W * cur + mz.F_NEXT])
        assert len(out) <= m.n_pages, "list does not terminate"
    return out


def free_list(m: Machine, z: int, order: int, mt: int) -> list[int]:
    return walk_list(m, free_list_id(m, z, order, mt))


def pcp_list(m: Machine, z: int, cpu: int, pindex: int) -> list[int]:
    return walk_list(m, pcp_list_id(m, z, cpu, pindex))


def pinfo(m: Machine, pfn: int) -> tuple[int, int, int, int]:
    """(order, state, aux, list id) of the page word of `pfn`."""
    w = int(m.S[mz.NODE_W * pfn + mz.F_PINFO])
    return (w & mz.PI_ORDER_MASK, (w >> mz.PI_STATE_SHIFT) & 3, (w >> mz.PI_AUX_SHIFT) & 7, w >> mz.PI_LIST_SHIFT)


def set_pinfo(m: Machine, pfn: int, order: int, state: int, aux: int = 0, lst: int = 0) -> None:
    m.S[mz.NODE_W * pfn + mz.F_PINFO] = (order | (state << mz.PI_STATE_SHIFT) | (aux << mz.PI_AUX_SHIFT)
                                       | (lst << mz.PI_LIST_SHIFT))


def pageblock_type(m: Machine, pfn: int) -> int:
    w = int(m.S[int(m.C[mz.H_PB]) + (pfn >> mz.PAGEBLOCK_ORDER)])
    return mz.MIGRATE_ISOLATE if w & mz.PB_ISOLATE else w & mz.PB_MT_MASK


def zone_addr(m: Machine, z: int, field_: int) -> int:
    """Index into C of a zone field."""
    return int(m.C[mz.H_ZONE]) + z * mz.ZS + field_


def pcp_addr(m: Machine, z: int, cpu: int, field_: int) -> int:
    return int(m.C[mz.H_PCP]) + (z * m.cfg.nr_cpus + cpu) * mz.PS + field_


def nr_free(m: Machine) -> int:
    return sum(m.zone_field(z, mz.Z_NR_FREE) for z in range(m.nr_zones))


def pcp_pages(m: Machine) -> int:
    return sum(m.pcp_field(z, c, mz.P_COUNT) for z in range(m.nr_zones) for c in range(m.cfg.nr_cpus))


def in_cma(m: Machine, pfn: int) -> bool:
    return any(base <= pfn < base + count for _, base, count, _ in m.cfg.cma_areas)


def run_events(m: Machine, ev: np.ndarray) -> int:
    """engine_core.run_events on the machine's state, from event 0.

    Older cores take a separate handle array; newer ones keep handles in the state, where
    ALLOC events need the sparse handle table (as the trace replayer sets up).
    """
    fn = getattr(engine_core.run_events, "py_func", engine_core.run_events)
    ev = np.ascontiguousarray(ev, dtype=np.int64)
    if "handles" in inspect.signature(fn).parameters:
        handles = np.full(max(1, int(ev[:, engine_core.EV_HANDLE].max(initial=0)) + 1), -1, dtype=np.int64)
        return int(engine_core.run_events(m.S, m.C, ev, handles, 0))
    if (ev[:, engine_core.EV_OP] == engine_core.OP_ALLOC).any() and getattr(mz, "H_LIVE_DENSE", None):
        assert int(m.C[mz.H_NLIVE]) == 0, "sparse handles need a machine without dense live blocks"
        m.C[mz.H_LIVE_DENSE] = 0
    return int(engine_core.run_events(m.S, m.C, ev, 0))


def event(t: int, op: int, cpu: int = 0, order: int = 0, gfp: int = 0, handle: int = 0) -> list[int]:
    return [t, op, cpu, order, gfp, handle]


def run_churn(m: Machine, W: np.ndarray, n: int) -> int:
    """cmasim.workload.churn.churn on the machine's state (the batch entry point of runs)."""
    from cmasim.workload.churn import churn

    fn = getattr(churn, "py_func", churn)
    if len(inspect.signature(fn).parameters) == 4:
        return int(churn(m.S, m.C, W, n))
    return int(churn(m.S, m.C, W, n, 1 << 62))  # later versions also take an end time
