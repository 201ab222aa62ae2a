"""SCOPS (Hung et al., CVPR 2019): self-supervised co-part segmentation, re-implemented (see docs/training.md, "SCOPS")."""

from benchmark.methods.scops.method import SCOPS  # noqa: F401  (registers the `scops` method)
