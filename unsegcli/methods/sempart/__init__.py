"""Sempart (Ravindran & Basu, arXiv 2309.10972): a feed-forward segmenter trained with a soft normalized cut on
frozen DINO features, a colour-guided fine branch and graph total variation; a second checkpoint family."""
