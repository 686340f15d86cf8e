"""Benchmark programs (the PUMA baseline), registered on a node only when its config turns them on."""
