"""Pseudo-labels from masks: components and boxes, the output formats, the runner, and merging."""
