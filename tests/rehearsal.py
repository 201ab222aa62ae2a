"""The real path, rehearsed offline: files in the exact names, keys, shapes and layouts of the real ones.

Every value is random, but a loader cannot tell these files from the real ones by anything it checks:

* torchvision's ImageNet ``IMAGENET1K_V1`` files of vgg16, vgg19 and resnet50 in ``$TORCH_HOME/hub/checkpoints``
  (:func:`write_torchvision_weights`);
* the DINO / DINOv2 files the ViT backbones look for: the release ``.pth`` files in the same folder (DINOv2's
  with its ``mask_token``) and, for ``dinov2_vits14``, timm's Hugging Face cache entry
  ``models--timm--vit_small_patch14_dinov2.lvd142m`` (``refs/main`` -> ``snapshots/<hash>/model.safetensors``)
  (:func:`write_vit_weights`);
* timm's Hugging Face cache entry of ``pdiscoformer``'s backbone, ``models--timm--vit_base_patch14_reg4_dinov2.lvd142m``
  (DINOv2 ViT-B/14 with registers, timm's names, float32 safetensors, about 350 MB) (:func:`write_timm_weights`);
* the DeepLab caffe ResNet-50 ``resnet50-caffe-22edcc82.pth`` that ``--init caffe:`` reads (the backbone's
  names plus the ImageNet ``fc`` head) (:func:`write_caffe_resnet50`);
* a released unsup-parts checkpoint, ``model_60000.pth`` = ``{"iter", "model_state_dict",
  "optimizer_state_dict"}`` of the K = 4 segmenter saved through ``nn.DataParallel`` (``module.`` prefixes), and
  a released SCOPS checkpoint (a raw state dict of the K + 1 output segmenter) (:func:`write_released_checkpoints`);
* a PDiscoNet file as the release's ``main.py`` saves it (``torch.save(net.state_dict())`` of its
  ResNet-101 network; the release publishes no trained weights) (:func:`write_pdisconet_checkpoint`);
* the released CUB ``supervisedlabels/<class>/<file>.png`` mask folder (grayscale 0/255, every image of the
  tree, as the release has) (:func:`write_supervisedlabels`);
* dataset trees at real image sizes in the official layouts: CUB-200-2011 (500x375-type JPEGs), DeepFashion
  In-shop (750x1101 ``img_highres`` JPEGs and colour-coded ``_segment.png``), PASCAL-Part (VOC2010 JPEGs and
  ``Annotations_Part`` .mat files) (:func:`write_cub`, :func:`write_deepfashion`, :func:`write_pascal_part`);
  PartImageNet OOD (with PDiscoFormer's split file), NABirds and Flowers-102 as the dataset tests build them
  (small images; :func:`write_newer_trees`).

To keep the files small, tensors of one shape share one random storage and the unused VGG classifier's rows
repeat one random row (``torch.save`` stores a storage once; shapes, keys and dtypes stay exact). The
fixtures of ``conftest.py`` build the kit once per test session under pytest's temporary folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

_BIG = 4_000_000  # tensors larger than this (the VGG classifier) repeat one random row


def random_state(shapes: dict[str, torch.Size], seed: int, *, shared: bool = True) -> dict[str, torch.Tensor]:
    """Random float tensors of these shapes (running variances positive, BN counters as in PyTorch)."""
    generator = torch.Generator().manual_seed(seed)
    by_shape: dict[tuple, torch.Tensor] = {}
    out = {}
    for key, shape in shapes.items():
        shape = tuple(shape)
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(0)
            continue
        if shared and shape in by_shape and not key.endswith("running_var"):
            out[key] = by_shape[shape]
            continue
        numel = int(np.prod(shape)) if shape else 1
        if shared and numel > _BIG:
            value = (torch.randn((1,) + shape[1:], generator=generator) * 0.01).expand(shape)
        else:
            value = torch.randn(shape, generator=generator) * 0.05
        if key.endswith("running_var"):
            value = value.abs() + 0.5
        out[key] = value
        if shared:
            by_shape[shape] = value
    return out


def _shapes(module: torch.nn.Module) -> dict[str, torch.Size]:
    return {k: v.shape for k, v in module.state_dict().items()}


def _meta(build):
    with torch.device("meta"):
        return build()


# -- weights --------------------------------------------------------------------------------------------
#: (arch, torchvision weights tag) of every ImageNet file a method reads: ``IMAGENET1K_V1`` of the VGG feature
#: backbones and of the segmenters' ResNet-50, ``DEFAULT`` (``IMAGENET1K_V2``) of pdisconet's ResNet-101
TORCHVISION_FILES = (("vgg16", "IMAGENET1K_V1"), ("vgg19", "IMAGENET1K_V1"), ("resnet50", "IMAGENET1K_V1"),
                     ("resnet101", "DEFAULT"))


def write_torchvision_weights(torch_home: Path, files=TORCHVISION_FILES) -> dict[str, Path]:
    """torchvision's ImageNet state dicts (every key of ``torchvision.models.<arch>()``) where torchvision
    caches them under ``torch_home``."""
    import torchvision

    out = {}
    for seed, (arch, tag) in enumerate(files):
        weights = getattr(torchvision.models.get_model_weights(arch), tag)
        path = torch_home / "hub" / "checkpoints" / Path(weights.url).name
        path.parent.mkdir(parents=True, exist_ok=True)
        model = _meta(lambda: getattr(torchvision.models, arch)(weights=None))
        torch.save(random_state(_shapes(model), seed), path)
        out[arch] = path
    return out


def write_vit_weights(torch_home: Path, hf_home: Path) -> dict[str, Path]:
    """DINO/DINOv2 release files in ``torch_home/hub/checkpoints`` (``dino_vits8``, ``dino_vitb8``,
    ``dinov2_vitb14``) and timm's Hugging Face cache entry of ``dinov2_vits14`` under ``hf_home/hub``."""
    from benchmark.methods.vit import VIT_BACKBONES, timm_model

    out = {}
    for seed, (name, spec) in enumerate(VIT_BACKBONES.items()):
        shapes = _shapes(timm_model(name))
        if name == "dinov2_vits14":  # timm's layout: its own names, float32, in safetensors
            path = _write_hf_entry(hf_home, spec.hub_repo, random_state(shapes, 100 + seed, shared=False))
        else:
            state = random_state(shapes, 100 + seed)
            if spec.release == "dinov2":  # the release keeps its masked-image-modelling token
                state["mask_token"] = torch.zeros(1, shapes["cls_token"][-1])
            path = torch_home / "hub" / "checkpoints" / spec.release_file
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(state, path)
        out[name] = path
    return out


def _write_hf_entry(hf_home: Path, repo: str, state: dict[str, torch.Tensor]) -> Path:
    """A Hugging Face hub cache entry as ``timm.create_model(..., pretrained=True)`` leaves it:
    ``hub/models--<org>--<name>/refs/main`` naming the snapshot ``snapshots/<commit>/model.safetensors``."""
    from safetensors.torch import save_file

    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    path = folder / "snapshots" / commit / "model.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))  # safetensors stores no shared storage
    return path


def timm_architectures() -> tuple[str, ...]:
    """The timm architectures whose default pretrained weights a shipped plan reads: the backbone of the
    ``pdiscoformer`` paper preset (DINOv2 ViT-B/14 with registers)."""
    from benchmark.methods.pdiscoformer.presets import PRESETS

    return (PRESETS["paper"].backbone,)


def write_timm_weights(hf_home: Path, archs: tuple[str, ...] | None = None) -> dict[str, Path]:
    """timm's Hugging Face cache entry of each architecture's default pretrained weights (``timm/<arch>.<tag>``,
    e.g. ``timm/vit_base_patch14_reg4_dinov2.lvd142m``): every key timm's model has, without a classifier
    (their pretrained config has ``num_classes = 0``), float32, at the architecture's own input size."""
    import timm

    from benchmark.methods.pretrained import timm_repo

    out = {}
    for seed, arch in enumerate(archs if archs is not None else timm_architectures()):
        model = _meta(lambda: timm.create_model(arch, pretrained=False, num_classes=0))
        out[arch] = _write_hf_entry(hf_home, timm_repo(arch), random_state(_shapes(model), 300 + seed, shared=False))
    return out


def _segmenter(num_outputs: int):
    from benchmark.methods.segmenter import PartSegmenter

    return _meta(lambda: PartSegmenter(num_outputs))


def write_caffe_resnet50(path: Path) -> Path:
    """``resnet50-caffe-22edcc82.pth``: the DeepLab ResNet-50 backbone names (no classifier ``layer5``, no BN
    counters: a pre-0.4 conversion) and the ImageNet ``fc`` head."""
    shapes = {k: v for k, v in _shapes(_segmenter(4)).items()
              if not k.startswith("layer5.") and not k.endswith("num_batches_tracked")}
    shapes.update({"fc.weight": torch.Size([1000, 2048]), "fc.bias": torch.Size([1000])})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_state(shapes, 7), path)
    return path


def write_ours_release(path: Path, num_parts: int = 4, seed: int = 11) -> Path:
    """An unsup-parts release ``model_60000.pth`` of the K = ``num_parts`` segmenter: DataParallel ``module.``
    names, the training wrapper with SGD's state."""
    ours = random_state(_shapes(_segmenter(num_parts)), seed)
    optimizer = {"state": {}, "param_groups": [
        {"lr": 1e-5, "momentum": 0.9, "dampening": 0, "weight_decay": 5e-4, "nesterov": False,
         "params": list(range(len(ours)))}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"iter": 60000, "model_state_dict": {f"module.{k}": v for k, v in ours.items()},
                "optimizer_state_dict": optimizer}, path)
    return path


def write_released_checkpoints(folder: Path) -> dict[str, Path]:
    """The unsup-parts CUB release ``model_60000.pth`` (K = 4, :func:`write_ours_release`) and a SCOPS release
    (a raw state dict, K = 4 parts + background)."""
    folder.mkdir(parents=True, exist_ok=True)
    scops = folder / "scops"
    scops.mkdir(exist_ok=True)
    torch.save(random_state(_shapes(_segmenter(5)), 12), scops / "model_60000.pth")
    return {"ours": write_ours_release(folder / "model_60000.pth"), "scops": scops / "model_60000.pth"}


def write_fgbg_model(path: Path) -> Path:
    """A ``benchmark train -m fgbg`` ``model.pt`` (partbench's own format; there is no released fg/bg model)
    whose classifier marks every pixel foreground: random backbone, zero classifier weights, biases -1/+1
    (masks that are neither empty nor random, so every metric downstream has foreground to score)."""
    from benchmark.methods.fgbg import FORMAT, PRESETS
    from benchmark.methods.training.checkpoint import MODEL_FORMAT

    state = random_state(_shapes(_segmenter(2)), 13)
    for key in [k for k in state if k.startswith("layer5.")]:
        state[key] = torch.zeros(state[key].shape)
        if key.endswith("bias"):
            state[key][:] = torch.tensor([-1.0, 1.0])
    fgbg = asdict(PRESETS["tiny"])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": MODEL_FORMAT, "model_state_dict": state, "iter": 1, "step": 1,
                "config": {"steps": 1, "image_size": fgbg["image_size"],
                           "extra": {"method": "fgbg", "format": FORMAT, "fgbg": fgbg, "init": "random",
                                     "masks": "gt", "dataset": "cub"}}}, path)
    return path


def write_pdisconet_checkpoint(path: Path, num_parts: int = 8, num_classes: int = 200,
                               backbone: str = "resnet101", seed: int = 14) -> Path:
    """``./cub/<model_name>.pt`` of PDiscoNet's ``main.py``: the bare state dict of its network (ResNet-101,
    K = 8, CUB's 200 classes by default), including the unused ``batchnorm`` the release declares."""
    from benchmark.methods.pdisconet.network import build_network

    path.parent.mkdir(parents=True, exist_ok=True)
    network = build_network(backbone, num_parts, num_classes, device="meta")
    torch.save(random_state(_shapes(network), seed), path)
    return path


# -- dataset trees at real sizes ---------------------------------------------------------------------------
def _photo(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth random colour field with an elliptic "object" (JPEG-friendly, not constant)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR)).copy()
    yy, xx = np.mgrid[:height, :width]
    inside = ((xx - width / 2) / (width / 3)) ** 2 + ((yy - height / 2) / (height / 3)) ** 2 < 1
    img[inside] = (img[inside] // 2 + rng.integers(60, 120, 3)).clip(0, 255)
    return img


def _ellipse(width: int, height: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return ((xx - width / 2) / (width / 3)) ** 2 + ((yy - height / 2) / (height / 3)) ** 2 < 1


CUB_PARTS = ["back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg", "left wing", "nape",
             "right eye", "right leg", "right wing", "tail", "throat"]
# (class folder, file, is_training, (W, H)): the sizes of real CUB images
CUB_IMAGES = [
    ("001.Black_footed_Albatross", "Black_Footed_Albatross_0001_796111.jpg", 0, (500, 375)),
    ("001.Black_footed_Albatross", "Black_Footed_Albatross_0002_55.jpg", 1, (500, 335)),
    ("001.Black_footed_Albatross", "Black_Footed_Albatross_0003_796136.jpg", 0, (500, 336)),
    ("002.Laysan_Albatross", "Laysan_Albatross_0001_545.jpg", 1, (375, 500)),
    ("002.Laysan_Albatross", "Laysan_Albatross_0002_1027.jpg", 0, (500, 375)),
    ("002.Laysan_Albatross", "Laysan_Albatross_0003_1033.jpg", 1, (500, 333)),
    ("003.Sooty_Albatross", "Sooty_Albatross_0001_796338.jpg", 0, (500, 400)),
    ("003.Sooty_Albatross", "Sooty_Albatross_0002_796395.jpg", 1, (500, 375)),
]


def write_cub(root: Path) -> Path:
    """``CUB_200_2011/`` with images, segmentations and every index file in the official formats."""
    (root / "parts").mkdir(parents=True, exist_ok=True)
    classes = sorted({c for c, _, _, _ in CUB_IMAGES})
    lines = {name: [] for name in ("images", "train_test_split", "bounding_boxes", "image_class_labels", "part_locs")}
    for i, (folder, name, train, (w, h)) in enumerate(CUB_IMAGES, start=1):
        rel = f"{folder}/{name}"
        (root / "images" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(_photo(w, h, i)).save(root / "images" / rel, quality=90)
        (root / "segmentations" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(_ellipse(w, h).astype(np.uint8) * 255).save(root / "segmentations" / rel.replace(".jpg", ".png"))
        x, y, bw, bh = w / 6, h / 6, 2 * w / 3, 2 * h / 3
        lines["images"].append(f"{i} {rel}")
        lines["train_test_split"].append(f"{i} {train}")
        lines["bounding_boxes"].append(f"{i} {x:.1f} {y:.1f} {bw:.1f} {bh:.1f}")
        lines["image_class_labels"].append(f"{i} {classes.index(folder) + 1}")
        for p in range(15):  # spread over the box, every one visible
            px, py = x + bw * (0.1 + 0.8 * ((p * 7) % 15) / 14), y + bh * (0.1 + 0.8 * p / 14)
            lines["part_locs"].append(f"{i} {p + 1} {px:.1f} {py:.1f} 1")
    for name in ("images", "train_test_split", "bounding_boxes", "image_class_labels"):
        (root / f"{name}.txt").write_text("\n".join(lines[name]) + "\n")
    (root / "parts" / "part_locs.txt").write_text("\n".join(lines["part_locs"]) + "\n")
    (root / "parts" / "parts.txt").write_text("".join(f"{k + 1} {n}\n" for k, n in enumerate(CUB_PARTS)))
    (root / "classes.txt").write_text("".join(f"{k + 1} {c}\n" for k, c in enumerate(classes)))
    _write_cmr_cachedir(root, [line.split() for line in lines["part_locs"]])
    return root


def _write_cmr_cachedir(root: Path, part_locs: list[list[str]]) -> None:
    """The CMR (Kanazawa et al.) ``cachedir/cub/data/{train,val,test,testval}_cub_cleaned.mat``: one struct
    per image (``id, rel_path, train, test, bbox{x1,y1,x2,y2}, width, height, parts (3 x 15: x, y, visible),
    mask, class_id``), 1-based pixel coordinates; train from the official training images, the official
    test images split into val and test."""
    import scipy.io

    classes = sorted({c for c, _, _, _ in CUB_IMAGES})
    fields = ["id", "rel_path", "train", "test", "bbox", "width", "height", "parts", "mask", "class_id"]
    test_ids = [i for i, (_, _, train, _) in enumerate(CUB_IMAGES, start=1) if not train]
    splits = {"train": [i for i in range(1, len(CUB_IMAGES) + 1) if i not in test_ids],
              "val": test_ids[:1], "test": test_ids[1:], "testval": test_ids}
    folder = root / "cachedir" / "cub" / "data"
    folder.mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        records = np.zeros((1, len(ids)), dtype=[(f, "O") for f in fields])
        for k, i in enumerate(ids):
            cls, name, train, (w, h) = CUB_IMAGES[i - 1]
            parts = np.zeros((3, 15))
            for row in part_locs:
                if int(row[0]) == i:
                    parts[:, int(row[1]) - 1] = (float(row[2]) + 1, float(row[3]) + 1, 1)
            values = {"id": i, "rel_path": f"{cls}/{name}", "train": train, "test": 1 - train,
                      "bbox": {"x1": w / 6 + 1, "y1": h / 6 + 1, "x2": 5 * w / 6, "y2": 5 * h / 6},
                      "width": w, "height": h, "parts": parts, "mask": _ellipse(w, h).astype(np.uint8),
                      "class_id": classes.index(cls) + 1}
            for field, value in values.items():
                records[0, k][field] = value
        scipy.io.savemat(str(folder / f"{split}_cub_cleaned.mat"), {"images": records})


def write_supervisedlabels(cub_root: Path) -> Path:
    """The released ``supervisedlabels/<class>/<file>.png`` (grayscale 0/255) for every image of the tree."""
    folder = cub_root / "supervisedlabels"
    for i, (cls, name, _, (w, h)) in enumerate(CUB_IMAGES, start=1):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        mask = _ellipse(w, h).astype(np.uint8) * 255
        mask[: h // 8] = 0
        Image.fromarray(mask).save(folder / cls / name.replace(".jpg", ".png"))
    return folder


# DeepFashion In-shop: img_highres images are 750 x 1101
DF_SIZE = (750, 1101)
DF_PALETTE = {0: (0, 0, 0), 1: (0, 100, 0), 8: (220, 220, 220), 11: (255, 0, 0), 13: (255, 250, 205)}
DF_SPLITS = {"train": ["img_highres/MEN/Denim/id_00000080/01_1_front.jpg",
                       "img_highres/MEN/Denim/id_00000080/01_2_side.jpg",
                       "img_highres/WOMEN/Tees/id_00000001/02_1_front.jpg"],
             "query": ["img_highres/WOMEN/Dresses/id_00000002/02_1_front.jpg",
                       "img_highres/WOMEN/Dresses/id_00000002/02_2_side.jpg"],
             "gallery": ["img_highres/WOMEN/Tees/id_00000007/01_1_front.jpg",
                         "img_highres/WOMEN/Tees/id_00000007/01_2_side.jpg"]}


def write_deepfashion(root: Path) -> Path:
    """``Anno/segmentation/``: the three split JSONs, the JPEGs and their colour-coded ``_segment.png``."""
    seg = root / "Anno" / "segmentation"
    seg.mkdir(parents=True, exist_ok=True)
    w, h = DF_SIZE
    k = 0
    for split, names in DF_SPLITS.items():
        (seg / f"DeepFashion_segmentation_{split}.json").write_text(json.dumps(
            {"info": {}, "images": [{"id": i, "file_name": n} for i, n in enumerate(names)], "annotations": []}))
        for name in names:
            labels = np.zeros((h, w), np.int64)
            labels[100:1000, 150:600] = 8  # body
            labels[100:350, 250:500] = 11  # hair/face
            labels[700:1000, 150:600] = (1, 13)[k % 2]  # trousers or skirt
            k += 1
            lut = np.zeros((14, 3), np.uint8)
            for label, colour in DF_PALETTE.items():
                lut[label] = colour
            path = seg / name
            path.parent.mkdir(parents=True, exist_ok=True)
            photo = _photo(w, h, 50 + k)
            photo[labels > 0] = (photo[labels > 0] // 3 + lut[labels[labels > 0]] // 2).clip(0, 255)
            Image.fromarray(photo).save(path, quality=90)
            Image.fromarray(lut[labels]).save(str(path)[:-4] + "_segment.png")
    return root


def write_pascal_part(root: Path) -> Path:
    """``VOC2010/JPEGImages``, ``VOC2010/ImageSets/Main/<class>_{train,val}.txt`` and ``Annotations_Part/*.mat``
    (the real struct layout) with objects of every category the shipped plans name."""
    categories = ["sheep", "horse", "cow", "motorbike", "aeroplane", "bus", "car", "bicycle", "dog", "cat"]
    parts = {"sheep": ["head", "torso", "lfuleg", "rfuleg"], "horse": ["head", "torso", "lfuleg", "tail"],
             "cow": ["head", "torso", "lhorn", "rfuleg"], "motorbike": ["fwheel", "bwheel", "handlebar", "headlight_1"],
             "aeroplane": ["body", "lwing", "rwing", "tail"], "bus": ["frontside", "leftside", "wheel_1", "door_1"],
             "car": ["frontside", "leftside", "wheel_1", "window_1"], "bicycle": ["fwheel", "bwheel", "saddle", "chainwheel"],
             "dog": ["head", "torso", "lfleg", "tail"], "cat": ["head", "torso", "lfleg", "tail"]}
    voc = root / "VOC2010"
    (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (root / "Annotations_Part").mkdir(parents=True, exist_ok=True)
    w, h = 500, 375
    membership = {c: {"train": [], "val": []} for c in categories}
    number = 0
    for category in categories:
        for split in ("train", "val"):
            for copy in range(2):
                number += 1
                image_id = f"2008_{number:06d}"
                Image.fromarray(_photo(w, h, 200 + number)).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=90)
                obj = np.zeros((h, w), np.uint8)
                obj[60:330, 80:430] = 1
                masks = []
                for j, name in enumerate(parts[category]):  # four bands over the object
                    m = np.zeros((h, w), np.uint8)
                    m[60 + j * 67:60 + (j + 1) * 67, 80:430] = 1
                    masks.append((name, m))
                _write_mat(root / "Annotations_Part" / f"{image_id}.mat", image_id, [(category, obj, masks)])
                membership[category][split].append(image_id)
    for category in categories:
        for split in ("train", "val"):
            ids = [i for c in categories for s in ("train", "val") for i in membership[c][s]]
            (voc / "ImageSets" / "Main" / f"{category}_{split}.txt").write_text("".join(
                f"{i} {' 1' if i in membership[category][split] else '-1'}\n" for i in ids))
    return root


def _write_mat(path: Path, image_id: str, objects) -> None:
    import scipy.io

    def struct(shape, names):
        return np.zeros(shape, dtype=[(n, "O") for n in names])

    objs = struct((1, len(objects)), ["class", "class_ind", "mask", "parts"])
    for k, (cls, mask, parts) in enumerate(objects):
        p = struct((1, len(parts)), ["part_name", "mask"])
        for j, (name, pm) in enumerate(parts):
            p[0, j]["part_name"] = np.array([name])
            p[0, j]["mask"] = pm
        objs[0, k]["class"] = np.array([cls])
        objs[0, k]["class_ind"] = np.array([[1]])
        objs[0, k]["mask"] = mask
        objs[0, k]["parts"] = p
    anno = struct((1, 1), ["imname", "objects"])
    anno[0, 0]["imname"] = np.array([image_id])
    anno[0, 0]["objects"] = objs
    scipy.io.savemat(str(path), {"anno": anno})


# -- the newer papers' datasets --------------------------------------------------------------------------
def write_newer_trees(folder: Path) -> dict[str, Path]:
    """PartImageNet OOD (with PDiscoFormer's ``train_test_split_pimagenet_ood.txt`` at its root, as the
    shipped plans' ``split_source = "pdisco"`` reads it), NABirds and Flowers-102 in their official layouts:
    the dataset tests' own miniature trees (``tests/dataset_fixtures.py``), so a layout is written in one
    place."""
    from dataset_fixtures import FIXTURES
    from test_datasets_partimagenet import write_pdisco_split

    roots = {}
    for name in ("partimagenet", "nabirds", "flowers102"):
        (folder / name).mkdir(parents=True, exist_ok=True)
        roots[name], _ = FIXTURES[name](folder / name)
    write_pdisco_split(roots["partimagenet"] / "train_test_split_pimagenet_ood.txt")
    return roots


# -- the whole kit ------------------------------------------------------------------------------------------
#: The datasets of the ``paper`` plan (``Kit.data_roots()`` without arguments).
PAPER_DATASETS = ("cub", "deepfashion", "pascal-part")


@dataclass(frozen=True)
class Kit:
    torch_home: Path
    hf_home: Path
    caffe: Path
    ours: Path  # released unsup-parts model_60000.pth
    scops: Path  # released SCOPS checkpoint
    fgbg: Path  # a partbench fg/bg model.pt (every pixel foreground)
    cub: Path
    supervisedlabels: Path
    deepfashion: Path
    pascal_part: Path
    partimagenet: Path  # the OOD release with PDiscoFormer's split file
    nabirds: Path
    flowers102: Path

    def env(self) -> dict[str, str]:
        """The environment that points torch and timm at the kit's caches."""
        return {"TORCH_HOME": str(self.torch_home), "HF_HOME": str(self.hf_home)}

    def roots(self) -> dict[str, Path]:
        """Dataset name (as ``--data-root NAME=PATH`` spells it) -> the kit's tree."""
        return {"cub": self.cub, "deepfashion": self.deepfashion, "pascal-part": self.pascal_part,
                "partimagenet": self.partimagenet, "nabirds": self.nabirds, "flowers102": self.flowers102}

    def data_roots(self, datasets=PAPER_DATASETS) -> list[str]:
        """``--data-root NAME=PATH`` for each of ``datasets`` (a ``KeyError`` for one the kit has no tree of)."""
        roots = self.roots()
        return [arg for name in datasets for arg in ("--data-root", f"{name}={roots[name]}")]


def weights_only(folder: Path) -> tuple[Path, Path]:
    """Just the caches (TORCH_HOME, HF_HOME) with every published backbone weights file."""
    torch_home, hf_home = folder / "torch", folder / "hf"
    write_torchvision_weights(torch_home)
    write_vit_weights(torch_home, hf_home)
    write_timm_weights(hf_home)
    return torch_home, hf_home


def build_kit(folder: Path) -> Kit:
    torch_home, hf_home = weights_only(folder)
    released = write_released_checkpoints(folder / "released")
    cub = write_cub(folder / "data" / "CUB_200_2011")
    newer = write_newer_trees(folder / "data")
    return Kit(torch_home=torch_home, hf_home=hf_home, caffe=write_caffe_resnet50(folder / "weights" / "resnet50-caffe-22edcc82.pth"),
               ours=released["ours"], scops=released["scops"], fgbg=write_fgbg_model(folder / "fgbg" / "model.pt"),
               cub=cub, supervisedlabels=write_supervisedlabels(cub),
               deepfashion=write_deepfashion(folder / "data" / "In-shop Clothes Retrieval Benchmark"),
               pascal_part=write_pascal_part(folder / "data" / "VOCdevkit_2010"), **newer)
