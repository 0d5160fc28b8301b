"""Offline evaluation of the engine's stages."""
