"""Workload generators: they produce events for the engine; they never touch mm state directly."""
