"""Shared building blocks for every vocalis model: audio, attention, optimizers, checkpoints.

Submodules are imported explicitly (``from core.attention import Attention``) so that
importing one part never pulls in the others.
"""
