"""The attentive GRU seq2seq model: vocabulary, data pipeline, training, decoding.

Submodules are imported explicitly (``from alime.seq2seq.model import ...``); this package file
imports nothing, so ``import alime.seq2seq`` does not load TensorFlow.
"""
