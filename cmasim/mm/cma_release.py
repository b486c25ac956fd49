"""free_contig_range(): give a cma_alloc() range back, page by page.

Kernel: mm/page_alloc.c free_contig_range() (up to v6.18 every page is freed with
__free_page(), so order-0 frees of CMA pages pass through the MOVABLE per-CPU list);
mm/cma.c cma_release() calls it.
"""

from cmasim.mm.jit import kjit
from cmasim.mm.mmzone import OW_FREE_PENDING, VM_DEFERRED_FREE, NODE_W, F_OWNER
from cmasim.mm.folio import folio_maybe_dma_pinned
from cmasim.mm.freelist import vm_add
from cmasim.mm.rmqueue import free_pages


@kjit
def free_contig_range(S, C, cpu, pfn, count):
    """__free_page() of every page: put_page() semantics, so a page still pinned is released
    only at its unpin (it keeps its pin references)."""
    for q in range(pfn, pfn + count):
        w = S[NODE_W * q + F_OWNER]
        if folio_maybe_dma_pinned(w):
            S[NODE_W * q + F_OWNER] = w | OW_FREE_PENDING
            vm_add(C, VM_DEFERRED_FREE, 1)
            continue
        S[NODE_W * q + F_OWNER] = 0
        free_pages(S, C, cpu, q)
