"""FOUND (Siméoni et al., CVPR 2023; official code valeoai/FOUND, Apache-2.0): a 1x1 convolution on frozen DINO
keys, its training-free background discovery, and its training recipe. Entries in ``unsegcli.methods.METHODS``."""
