"""Readers and writers at the edges: files in, arrays out (and back)."""
