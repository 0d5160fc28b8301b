"""Experiments and probes kept beside the product (not installed with alime)."""
