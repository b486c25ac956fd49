"""The core's pseudo-random numbers (lib/random32.c prandom_u32() stand-in).

A 32-bit xorshift (Marsaglia) kept in C[H_RNG], seeded explicitly per run; integer-only,
so compiled and interpreted runs draw the same sequence.
"""

from cmasim.mm.jit import kjit, kjit_inline
from cmasim.mm.mmzone import H_RNG


@kjit_inline
def prandom_u32(C):
    x = prandom_next(C[H_RNG])
    C[H_RNG] = x
    return x


@kjit_inline
def prandom_next(x):
    """The draw after x (the state is the last draw): lets a caller look ahead without drawing."""
    x ^= (x << 13) & 0xFFFFFFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFFFFFF
    return x


@kjit
def prandom_jitter(C, mean):
    """A gap uniform in [mean/2, 3*mean/2): deterministic stand-in for exponential arrivals."""
    if mean <= 1:
        return mean
    return mean // 2 + prandom_u32(C) % mean
