"""The lab beside the house: experiments, probes and comparisons the product does not serve.

Nothing in ``alime`` imports this package. Each tool runs as ``python -m research.<tool>``
(``train_matcher``, ``validation``, ``select``) from a checkout, with its tests under
``tests/research/``; see docs/research.md.
"""
