"""A binary min-heap of timers on the simulated clock (pin expiry).

Kernel counterpart: the timer wheel / hrtimers that end a DMA transfer and its
unpin_user_pages(); here only the ordering matters. Entries are (time_ns, payload) pairs
in a section of C; ties break on insertion order through a sequence number folded into
the payload slot's companion, so runs are deterministic. A full heap refuses the timer
and counts it in C[H_TIMER_LOST].
"""

from cmasim.mm.jit import kjit
from cmasim.mm.mmzone import H_HEAP, H_HEAP_CAP, H_HEAP_N, H_TIMER_LOST, H_TIMER_SEQ

HEAP_W = 3  # time, seq, payload


@kjit
def _less(C, b, i, j):
    ti = C[b + i * HEAP_W]
    tj = C[b + j * HEAP_W]
    if ti != tj:
        return ti < tj
    return C[b + i * HEAP_W + 1] < C[b + j * HEAP_W + 1]


@kjit
def _swap(C, b, i, j):
    for k in range(HEAP_W):
        t = C[b + i * HEAP_W + k]
        C[b + i * HEAP_W + k] = C[b + j * HEAP_W + k]
        C[b + j * HEAP_W + k] = t



@kjit
def timer_push(C, t, payload):
    """Add a timer; returns False (and counts it) when the heap is full."""
    n = C[H_HEAP_N]
    if n >= C[H_HEAP_CAP]:
        C[H_TIMER_LOST] += 1
        return False
    b = C[H_HEAP]
    seq = C[H_TIMER_SEQ]
    C[H_TIMER_SEQ] = seq + 1
    C[b + n * HEAP_W] = t
    C[b + n * HEAP_W + 1] = seq
    C[b + n * HEAP_W + 2] = payload
    i = n
    C[H_HEAP_N] = n + 1
    while i > 0:
        parent = (i - 1) // 2
        if _less(C, b, i, parent):
            _swap(C, b, i, parent)
            i = parent
        else:
            break
    return True


@kjit
def timer_peek_time(C):
    """Time of the earliest timer, or -1 when there is none."""
    if C[H_HEAP_N] == 0:
        return -1
    return C[C[H_HEAP]]


@kjit
def timer_pop(C):
    """Remove the earliest timer and return its payload."""
    b = C[H_HEAP]
    n = C[H_HEAP_N] - 1
    payload = C[b + 2]
    if n > 0:
        for k in range(HEAP_W):
            C[b + k] = C[b + n * HEAP_W + k]
    C[H_HEAP_N] = n
    i = 0
    while True:
        lft = 2 * i + 1
        rgt = lft + 1
        m = i
        if lft < n and _less(C, b, lft, m):
            m = lft
        if rgt < n and _less(C, b, rgt, m):
            m = rgt
        if m == i:
            break
        _swap(C, b, i, m)
        i = m
    return payload
