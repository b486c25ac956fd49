"""GFP flags by name: the composites kernel code and traces use (include/linux/gfp_types.h).

Values follow the v6.12 bit layout without KASAN/LOCKDEP bits; `__GFP_CMA` is Android's
out-of-tree flag, given a bit above the mainline ones. `format_gfp` prints a mask the way
the kernel's show_gfp_flags() does: composite names first, then single flags.
"""

from __future__ import annotations

from cmasim.mm import mmzone as mz

BITS = {
    "__GFP_DMA": mz.GFP_DMA_, "__GFP_HIGHMEM": mz.GFP_HIGHMEM_, "__GFP_DMA32": mz.GFP_DMA32_,
    "__GFP_MOVABLE": mz.GFP_MOVABLE_, "__GFP_RECLAIMABLE": mz.GFP_RECLAIMABLE_, "__GFP_HIGH": mz.GFP_HIGH_,
    "__GFP_IO": mz.GFP_IO_, "__GFP_FS": mz.GFP_FS_, "__GFP_ZERO": mz.GFP_ZERO_,
    "__GFP_DIRECT_RECLAIM": mz.GFP_DIRECT_RECLAIM_, "__GFP_KSWAPD_RECLAIM": mz.GFP_KSWAPD_RECLAIM_,
    "__GFP_WRITE": mz.GFP_WRITE_, "__GFP_NOWARN": mz.GFP_NOWARN_, "__GFP_RETRY_MAYFAIL": mz.GFP_RETRY_MAYFAIL_,
    "__GFP_NOFAIL": mz.GFP_NOFAIL_, "__GFP_NORETRY": mz.GFP_NORETRY_, "__GFP_MEMALLOC": mz.GFP_MEMALLOC_,
    "__GFP_COMP": mz.GFP_COMP_, "__GFP_NOMEMALLOC": mz.GFP_NOMEMALLOC_, "__GFP_HARDWALL": mz.GFP_HARDWALL_,
    "__GFP_THISNODE": mz.GFP_THISNODE_, "__GFP_ACCOUNT": mz.GFP_ACCOUNT_, "__GFP_CMA": mz.GFP_CMA_,
}
__GFP_RECLAIM = mz.GFP_DIRECT_RECLAIM_ | mz.GFP_KSWAPD_RECLAIM_
GFP_ATOMIC = mz.GFP_HIGH_ | mz.GFP_KSWAPD_RECLAIM_
GFP_KERNEL = __GFP_RECLAIM | mz.GFP_IO_ | mz.GFP_FS_
GFP_KERNEL_ACCOUNT = GFP_KERNEL | mz.GFP_ACCOUNT_
GFP_NOWAIT = mz.GFP_KSWAPD_RECLAIM_ | mz.GFP_NOWARN_
GFP_NOIO = __GFP_RECLAIM
GFP_NOFS = __GFP_RECLAIM | mz.GFP_IO_
GFP_USER = __GFP_RECLAIM | mz.GFP_IO_ | mz.GFP_FS_ | mz.GFP_HARDWALL_
GFP_HIGHUSER = GFP_USER | mz.GFP_HIGHMEM_
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | mz.GFP_MOVABLE_
GFP_TRANSHUGE_LIGHT = (GFP_HIGHUSER_MOVABLE | mz.GFP_COMP_ | mz.GFP_NOMEMALLOC_ | mz.GFP_NOWARN_) & ~__GFP_RECLAIM
GFP_TRANSHUGE = GFP_TRANSHUGE_LIGHT | mz.GFP_DIRECT_RECLAIM_

# Order matters: the kernel's __def_gfpflag_names lists composites from the largest down.
COMPOSITES = {
    "GFP_TRANSHUGE": GFP_TRANSHUGE, "GFP_TRANSHUGE_LIGHT": GFP_TRANSHUGE_LIGHT,
    "GFP_HIGHUSER_MOVABLE": GFP_HIGHUSER_MOVABLE, "GFP_HIGHUSER": GFP_HIGHUSER, "GFP_USER": GFP_USER,
    "GFP_KERNEL_ACCOUNT": GFP_KERNEL_ACCOUNT, "GFP_KERNEL": GFP_KERNEL, "GFP_NOFS": GFP_NOFS,
    "GFP_ATOMIC": GFP_ATOMIC, "GFP_NOIO": GFP_NOIO, "GFP_NOWAIT": GFP_NOWAIT,
}
NAMES = {**COMPOSITES, **BITS, "__GFP_RECLAIM": __GFP_RECLAIM}


class GfpError(ValueError):
    pass


def parse_gfp(text: str) -> int:
    """'GFP_KERNEL|__GFP_ZERO' -> mask. Unknown names raise GfpError naming them."""
    text = text.strip()
    if text in ("none", "0", ""):
        return 0
    mask = 0
    for part in text.split("|"):
        part = part.strip()
        if part in NAMES:
            mask |= NAMES[part]
        elif part.startswith("0x"):
            mask |= int(part, 16)
        else:
            raise GfpError(f"unknown GFP flag {part!r}")
    return mask


def format_gfp(mask: int) -> str:
    """show_gfp_flags(): composite names first (largest match), then the remaining bits."""
    if mask == 0:
        return "none"
    out = []
    rest = mask
    for name, val in COMPOSITES.items():
        if val and (rest & val) == val:
            out.append(name)
            rest &= ~val
    for name, val in BITS.items():
        if rest & val:
            out.append(name)
            rest &= ~val
    if rest:
        out.append(hex(rest))
    return "|".join(out)


THP_DEFRAG = ("always", "defer", "defer+madvise", "madvise", "never")


def vma_thp_gfp_mask(defrag: str, vma_madvised: bool = False) -> int:
    """The GFP flags of a THP fault for /sys/kernel/mm/transparent_hugepage/defrag = `defrag`
    in a VMA with (`vma_madvised`, MADV_HUGEPAGE) or without VM_HUGEPAGE.
    Kernel: mm/huge_memory.c vma_thp_gfp_mask() (v6.1; the default setting is "madvise")."""
    if defrag == "always":
        return GFP_TRANSHUGE | (0 if vma_madvised else mz.GFP_NORETRY_)
    if defrag == "defer":
        return GFP_TRANSHUGE_LIGHT | mz.GFP_KSWAPD_RECLAIM_
    if defrag == "defer+madvise":
        return GFP_TRANSHUGE_LIGHT | (mz.GFP_DIRECT_RECLAIM_ if vma_madvised else mz.GFP_KSWAPD_RECLAIM_)
    if defrag == "madvise":
        return GFP_TRANSHUGE_LIGHT | (mz.GFP_DIRECT_RECLAIM_ if vma_madvised else 0)
    if defrag == "never":
        return GFP_TRANSHUGE_LIGHT
    raise GfpError(f"unknown THP defrag setting {defrag!r} (one of {', '.join(THP_DEFRAG)})")
