"""Retrieval stages: BM25 over a sparse inverted index (dense retrieval lives beside it)."""
