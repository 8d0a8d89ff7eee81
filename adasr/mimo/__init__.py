"""Massive-MIMO signal detection (thesis chapter 3): QAM problem, channel sets, classic
detectors, MMNet with online training. Independent of the super-resolution code."""

__all__ = []
