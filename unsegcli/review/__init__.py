"""`unseg show`: overlays and a static HTML review report for masks, pseudo-labels and detections."""
