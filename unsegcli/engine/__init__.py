"""MOVE training (paper sec. 2-3) and self-training on pseudo-masks."""
