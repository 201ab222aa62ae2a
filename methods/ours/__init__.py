"""``ours``: Choudhury et al., "Unsupervised Part Discovery from Contrastive Reconstruction" (NeurIPS 2021).

Building blocks, each a pure and separately tested module (what they reproduce: docs/training.md):

* :mod:`benchmark.methods.segmenter` -- the DeepLab-v2 ResNet-50 2-branch network (shared with ``scops``);
* :mod:`.losses` -- the soft part prototypes, the soft within-part variance behind L_f and L_v, the
  contrastive loss L_c and the equivariance loss L_e, vectorised over the batch, no host syncs;
* :mod:`.warp` -- the random similarity + thin-plate-spline warp T, batched on the device;
* :mod:`.augment` -- the colour jitter / random grayscale of the reference with per-image parameters on device tensors,
  and the RGB -> CIE-Lab conversion of the colour target.

The registered method, the training loop and the CLI live in sibling modules that build on these.
"""

from benchmark.methods.ours import method  # noqa: E402,F401  (registers "ours")
