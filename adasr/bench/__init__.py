"""Reproducible experiments: each runs the competitors side by side and reports ratios."""

__all__ = []
