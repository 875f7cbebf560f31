"""Azote: an open implementation of the NitroGen recipe for generalist game-playing agents."""

__version__ = "0.1.0"
