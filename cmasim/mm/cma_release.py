"""free_contig_range(): give a cma_alloc() range back, page by page.

Kernel: mm/page_alloc.c free_contig_range() (up to v6.18 every page is freed with
__free_page(), so order-0 frees of CMA pages pass through the MOVABLE per-CPU list);
mm/cma.c cma_release() calls it.
"""

from cmasim.mm.jit import kjit
from cmasim.mm.mmzone import H_OWNER
from cmasim.mm.rmqueue import free_pages


@kjit
def free_contig_range(S, C, cpu, pfn, count):
    for q in range(pfn, pfn + count):
        S[C[H_OWNER] + q] = 0
        free_pages(S, C, cpu, q)
