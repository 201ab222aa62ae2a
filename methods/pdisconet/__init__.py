"""``pdisconet``: van der Klis et al., "PDiscoNet: Semantically consistent part discovery for fine-grained
recognition" (ICCV 2023), reference ``robertdvdk/part_detection``.

* :mod:`.network` -- the torchvision ResNet with the part head, the modulation and the classifier, in the
  release's parameter names;
* :mod:`.checkpoint` -- reading files in the release's layout (what its ``main.py`` saves) and partbench's;
* :mod:`.method` -- the registered method.

Deviations from the release: ``docs/pdisconet.md``.
"""

from benchmark.methods.pdisconet import method  # noqa: E402,F401  (registers "pdisconet")
