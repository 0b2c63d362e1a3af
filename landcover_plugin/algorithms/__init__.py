"""Thin Processing algorithms, one per file: parameters -> files -> engine call -> outputs."""
