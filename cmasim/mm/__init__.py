"""The kernel model: one module per kernel file (mm/page_alloc.c -> page_alloc.py, ...).

mm code never imports workload, CLI or report code, and never prints.
"""
