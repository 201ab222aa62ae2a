"""SCOPS (Hung et al., CVPR 2019): self-supervised co-part segmentation, re-implemented (method-spec §2)."""
