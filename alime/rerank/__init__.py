"""Candidate scorers for reranking retrieved answers (imported explicitly; loads no TensorFlow)."""
