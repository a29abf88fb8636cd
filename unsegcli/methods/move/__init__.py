"""MOVE (Bielski & Favaro, NeurIPS 2022): the segmenter (``segmenter.py``, ``head.py``), its prediction
(``predictor.py``), its checkpoint family (``family.py``), its training objective and self-training
(``objective.py``, with ``build.py``, ``inpainters.py``, ``discriminator.py``, ``compose.py``, ``losses.py``),
its options (``config.py``) and the one-off import of the official release (``official_import.py``)."""
