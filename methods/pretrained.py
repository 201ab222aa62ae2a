"""Where every pretrained weights file comes from: the catalogue behind ``weights_needed`` (one home).

Like timm's pretrained config attached to each registered model, each backbone has one entry saying which
file its published weights are, where the loader looks for it and how a user gets it:

* torchvision's ImageNet ``IMAGENET1K_V1`` files of ``vgg16``, ``vgg19`` (the VGG feature backbones) and
  ``resnet50`` (``--init torchvision`` of the DeepLab segmenter), in ``$TORCH_HOME/hub/checkpoints`` under
  the file name of torchvision's URL (:func:`imagenet_weights`), and the ImageNet ResNets that ``pdisconet``
  trains from (torchvision's ``DEFAULT`` weights of each, :func:`resnet_backbone`);
* the DINO / DINOv2 release files of the ViT backbones, in the same torch hub folder, or timm's Hugging Face
  cache entry ``timm/<timm name>.<tag>`` (:func:`vit_weights`);
* files the user names: ``-p weights=PATH``, ``-p vgg_weights=PATH``, ``--init caffe:PATH``
  (:func:`user_file`).

The ``-p`` values of the methods map onto entries with :func:`vgg_backbone`, :func:`feature_backbone`
(``kmeans``/``dff``: VGG or ViT) and :func:`segmenter_init`. The loaders (:mod:`.backbones`, :mod:`.vit`,
:mod:`.segmenter`) read the same entries, so "is it here" and "where is it read from" have one answer.
Paths are computed when asked (``TORCH_HOME`` and ``HF_HOME`` may change between calls, as in tests).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from benchmark.core.requirements import ALLOW_DOWNLOAD_ENV, WeightsFile

#: The torchvision architectures whose ImageNet weights partbench reads.
TORCHVISION_ARCHS = ("vgg16", "vgg19", "resnet50")
#: How to pass your own VGG file, when the loader does not know which method asks.
VGG_FILE_OPTIONS = "`-p weights=PATH` (kmeans, dff) or `-p vgg_weights=PATH` (ours, scops)"


def torch_hub_checkpoint(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url(url)`` keeps its file (``TORCH_HOME`` moves it)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def imagenet_url(arch: str, tag: str = "IMAGENET1K_V1") -> str:
    """torchvision's URL of the ``tag`` weights of ``arch`` (a ``KeyError`` for an unknown tag)."""
    import torchvision

    return torchvision.models.get_model_weights(arch)[tag].url


def imagenet_weights_path(arch: str, tag: str = "IMAGENET1K_V1") -> Path:
    """Where torchvision keeps (and partbench looks for) the ImageNet state dict of ``arch``."""
    return torch_hub_checkpoint(imagenet_url(arch, tag))


def imagenet_weights(arch: str, own_file: str = VGG_FILE_OPTIONS, tag: str = "IMAGENET1K_V1") -> WeightsFile:
    """torchvision's ImageNet weights of ``arch`` (``vgg16``, ``vgg19``, ``resnet50``); ``own_file`` says
    how to pass another file or skip them (e.g. "-p init=caffe:PATH|random")."""
    url, path = imagenet_url(arch, tag), imagenet_weights_path(arch, tag)
    # Only the VGG loader downloads (the segmenter's --init torchvision reads the cache only).
    downloadable = arch != "resnet50"
    return WeightsFile(
        f"ImageNet weights for {arch}", (path,),
        f"(1) on a machine with internet run `python -c \"import torchvision; torchvision.models.{arch}("
        f"weights='{tag}')\"` (or download {url}) and copy the file to {path}, or point TORCH_HOME at "
        f"the folder holding hub/checkpoints/{path.name}; "
        + (f"(2) set {ALLOW_DOWNLOAD_ENV}=1 to let partbench download it now; (3) " if downloadable else "(2) ")
        + f"pass {own_file}", downloadable=downloadable)


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, read from the environment at call time (as huggingface_hub does)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = Path(os.environ["XDG_CACHE_HOME"]).expanduser() if os.environ.get("XDG_CACHE_HOME") else \
        Path.home() / ".cache"
    return base / "huggingface" / "hub"


def hf_hub_file(repo: str) -> Path | None:
    """The cached weights of a Hugging Face model repository (``model.safetensors`` or ``pytorch_model.bin``
    of the snapshot that ``refs/main`` names, else of any snapshot), or ``None``."""
    folder = hf_hub_cache() / ("models--" + repo.replace("/", "--"))
    ref = folder / "refs" / "main"
    snapshots = [folder / "snapshots" / ref.read_text().strip()] if ref.is_file() else \
        sorted((folder / "snapshots").glob("*"))
    for snapshot in snapshots:
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (snapshot / name).is_file():
                return snapshot / name
    return None


def vit_weights(backbone: str) -> WeightsFile:
    """The DINO/DINOv2 release of a ViT backbone: the release file in the torch hub folder, or timm's cache."""
    from benchmark.methods.vit import vit_spec

    spec = vit_spec(backbone)
    release = torch_hub_checkpoint(spec.url)
    hub = hf_hub_file(spec.hub_repo)
    paths = (release,) + ((hub,) if hub is not None else ())
    return WeightsFile(
        f"{spec.title} weights for {backbone}", paths,
        f"neither {release} nor timm's cache entry {spec.hub_repo} (under {hf_hub_cache()}) exists. Either "
        f"(1) on a machine with internet run `python -c \"import torch; torch.hub.load_state_dict_from_url("
        f"'{spec.url}')\"` and copy hub/checkpoints/{spec.release_file} to {release} (or point TORCH_HOME at the "
        f"folder holding hub/checkpoints/{spec.release_file}), or run `python -c \"import timm; timm.create_model("
        f"'{spec.timm_name}.{spec.timm_tag}', pretrained=True)\"` and copy the Hugging Face cache (HF_HOME moves "
        f"it); (2) set {ALLOW_DOWNLOAD_ENV}=1 to let partbench download {spec.url} now; (3) pass the release "
        f"file or a timm state dict with `-p weights=PATH`", downloadable=True)


def timm_repo(architecture: str) -> str:
    """timm's Hugging Face repository of the default pretrained weights of ``architecture``
    (``timm/vit_base_patch14_reg4_dinov2.lvd142m``)."""
    import timm

    try:
        return timm.models.get_pretrained_cfg(architecture).hf_hub_id or f"timm/{architecture}"
    except Exception:  # an architecture without a registered pretrained config
        return f"timm/{architecture}"


def timm_weights(architecture: str, own_file: str) -> WeightsFile:
    """timm's default pretrained weights of ``architecture`` in the Hugging Face cache (never downloaded by
    partbench); ``own_file`` says how to pass another file or skip them."""
    repo = timm_repo(architecture)
    hub = hf_hub_file(repo)
    folder = hf_hub_cache() / ("models--" + repo.replace("/", "--"))
    return WeightsFile(
        f"timm's pretrained weights of {architecture} ({repo})", (hub,) if hub is not None else (folder,),
        f"on a machine with internet run `python -c \"import timm; timm.create_model('{repo.removeprefix('timm/')}', "
        f"pretrained=True)\"` and copy the Hugging Face cache (HF_HOME moves it; looked for under {hf_hub_cache()}), "
        f"or pass {own_file}")


def user_file(path: str | Path, what: str, fix: str) -> WeightsFile:
    """A file the user named (``-p weights=PATH``, ``--init caffe:PATH``): it must exist; nothing downloads it."""
    return WeightsFile(what, (Path(path).expanduser(),), fix)


# -- a method's parameters -> the files they make it read --------------------------------------------
def vgg_backbone(arch: str, weights: str, param: str) -> list[WeightsFile]:
    """``-p {param}=imagenet|random|PATH`` of a VGG backbone."""
    if weights == "random":
        return []
    if weights in ("imagenet", "pretrained"):
        return [imagenet_weights(arch, f"-p {param}=PATH|random")]
    return [user_file(weights, f"{arch} weights file (-p {param})",
                      f"pass a torchvision-format {arch} state dict, or -p {param}=imagenet|random")]


def feature_backbone(backbone: str, weights: str) -> list[WeightsFile]:
    """``-p backbone=NAME -p weights=pretrained|imagenet|dino|dinov2|random|PATH`` of ``kmeans``/``dff``
    (an unknown backbone needs nothing here: the method refuses it with its own error)."""
    from benchmark.methods import vit

    if weights == "random":
        return []
    if backbone in vit.VIT_BACKBONES:
        if weights in ("pretrained", vit.vit_spec(backbone).release):
            return [vit_weights(backbone)]
        if weights in ("imagenet", "dino", "dinov2"):
            return []  # a release of another family: refused with its own error when the backbone is built
        return [user_file(weights, f"{backbone} weights file (-p weights)",
                          "pass the release .pth file or timm's model.safetensors, or -p weights=pretrained|random")]
    if backbone in ("vgg16", "vgg19"):
        if weights in ("dino", "dinov2"):
            return []
        return vgg_backbone(backbone, weights, "weights")
    return []


def resnet_backbone(arch: str, weights: str, param: str = "weights") -> list[WeightsFile]:
    """``-p {param}=imagenet|random|PATH`` of a torchvision ResNet trained from ImageNet (``pdisconet``): the
    ``DEFAULT`` weights of ``arch``, as the PDiscoNet release loads them (``IMAGENET1K_V2`` for ResNet-101)."""
    import torchvision

    if weights == "random":
        return []
    if weights == "imagenet":
        tag = torchvision.models.get_model_weights(arch).DEFAULT.name
        return [imagenet_weights(arch, f"-p {param}=PATH|random", tag)]
    return [user_file(weights, f"{arch} weights file (-p {param})",
                      f"pass a torchvision-format {arch} state dict, or -p {param}=imagenet|random")]


def segmenter_init(init: str, option: str = "-p init=") -> list[WeightsFile]:
    """``--init`` / ``-p init`` of the DeepLab ResNet-50 segmenter (``ours``, ``scops``, ``fgbg``):
    ``torchvision`` reads the ImageNet ResNet-50, ``caffe:PATH`` the DeepLab caffe file, ``random`` nothing.
    ``option`` is how the user sets it, up to the value (``"-p init="``, ``"--init "``)."""
    if init == "torchvision" or init.startswith("torchvision:"):
        tag = init.partition(":")[2] or "IMAGENET1K_V1"
        try:
            return [imagenet_weights("resnet50", f"{option}caffe:PATH|random", tag)]
        except KeyError:
            return []  # an unknown tag: refused by the segmenter with its own error
    if init.startswith("caffe:"):
        return [user_file(init[len("caffe:"):], f"DeepLab ResNet-50 caffe weights ({option}caffe:PATH)",
                          "pass resnet50-caffe-22edcc82.pth (the DeepLab caffe ResNet-50 converted to PyTorch), "
                          f"or {option}torchvision|random")]
    return []  # random, or a value refused by the segmenter with its own error
