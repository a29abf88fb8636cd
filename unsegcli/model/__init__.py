"""Pure nn.Modules (backbone, head, segmenter) and their weights (checkpoint, registry)."""
