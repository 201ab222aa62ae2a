"""SCOPS (Hung et al., CVPR 2019): self-supervised co-part segmentation, re-implemented (see docs/training.md, "SCOPS")."""

from benchmark.methods.scops.method import SCOPS  # noqa: F401  (registers the `scops` method)
from benchmark.methods.scops import bench as _bench  # noqa: F401,E402  (`benchmark bench train-step -p method=scops`)
