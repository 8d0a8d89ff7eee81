"""Datasets and degradations for SR (imresize, pairs, patches)."""
