"""Training-free object discovery on DINO keys: LOST, TokenCut and CutLER's MaskCut, on one spectral core.

``options.py`` (torch-free) declares each method's options; ``features.py`` extracts the last-block keys,
``core.py`` holds the graph, solver, orientation and seed rules, one short module per method cuts, and
``predictor.SpectralPredictor`` is their MaskPredictor.
"""
