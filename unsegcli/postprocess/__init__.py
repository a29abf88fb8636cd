"""Masks -> components, boxes and pseudo-label records (pure functions on arrays)."""
