"""cmasim: a simulator of the Linux physical page allocator, built to explain cma_alloc() failures.

The public face is small: `cmasim.run.run_scenario`, `cmasim.policy.get_policy`, the CLI
(`cmasim.cli`). The kernel model lives in `cmasim.mm`, one module per kernel file.
"""

__version__ = "0.1.0"
