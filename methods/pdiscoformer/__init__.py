"""``pdiscoformer``: Aniraj et al., "PDiscoFormer: Relaxing Part Discovery Constraints with Vision
Transformers" (ECCV 2024), reference ``ananthu-aniraj/pdiscoformer``.

* :mod:`.network` -- the timm ViT with the part head, its modulation and the classifier, in the release's
  parameter names;
* :mod:`.checkpoint` -- reading released checkpoints (``.pt`` snapshots, ``model.safetensors``) from a file;
* :mod:`.presets` -- the training recipes (``paper``: the release's command; ``tiny``: CPU tests);
* :mod:`.train_step` -- parameter groups, Adam, augmentation, class labels and the losses of one step;
* :mod:`.method` -- the registered method (training through the shared trainer, or a checkpoint).

Deviations from the release: ``docs/pdiscoformer.md``.
"""

from benchmark.methods.pdiscoformer import method  # noqa: E402,F401  (registers "pdiscoformer")
