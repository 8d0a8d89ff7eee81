"""Datasets and degradations for SR (imresize, pairs, patches)."""

__all__ = []
