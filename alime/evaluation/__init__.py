"""Offline evaluation: response selection, generation quality, the threshold sweep and the
held-out validation data they run on. Imports no TensorFlow (models are loaded by the caller)."""
