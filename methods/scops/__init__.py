"""SCOPS (Hung et al., CVPR 2019): self-supervised co-part segmentation, re-implemented (method-spec §2)."""

from benchmark.methods.scops.method import SCOPS  # noqa: F401  (registers the `scops` method)
