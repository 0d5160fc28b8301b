"""Retrieval: BM25 over the knowledge base's questions (and dense retrieval, fused)."""
