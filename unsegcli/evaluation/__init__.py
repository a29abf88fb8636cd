"""Metrics exactly as the published protocols compute them."""
