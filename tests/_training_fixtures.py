"""Tiny data and models for the training-machinery tests (not collected: starts with an underscore)."""

from __future__ import annotations

import torch
from torch import nn

from benchmark.core.dataset import Dataset
from benchmark.core.types import Sample


class TinyDataset(Dataset):
    """``n`` random 8x8 images with a random mask, randomly flipped in ``__getitem__`` with torch's global
    RNG (as the real training views augment): exact resume must reproduce the flips too."""

    needs_data_root = False

    def __init__(self, n: int = 20, size: int = 8, augment: bool = True):
        super().__init__(None, split="train", view="train")
        self.augment = augment
        g = torch.Generator().manual_seed(123)
        self.images = torch.rand(n, 3, size, size, generator=g)
        self.masks = (torch.rand(n, size, size, generator=g) > 0.3).float()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Sample:
        image, mask = self.images[i], self.masks[i]
        if self.augment and bool(torch.rand(()) < 0.5):
            image, mask = image.flip(-1), mask.flip(-1)
        return Sample(image=image, id=f"img{i}", mask=mask)


class TinyNet(nn.Module):
    def __init__(self, dropout: float = 0.2, batchnorm: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4) if batchnorm else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.head(self.drop(torch.relu(self.bn(self.conv(x)))))


def groups(model):
    from benchmark.methods.training import ParamGroup

    return [ParamGroup("backbone", list(model.conv.parameters()) + list(model.bn.parameters())),
            ParamGroup("head", list(model.head.parameters()), lr_mult=10.0)]


def noisy_loss(model, batch, info):
    """Uses the global RNG (dropout) and the step generator (noise): both must be restored on resume."""
    out = model(batch.images)
    noise = torch.rand(out.shape, generator=info.generator, device=out.device)
    target = batch.masks[:, None].expand_as(out) + 0.1 * noise
    mse = ((out - target) ** 2 * batch.masks[:, None]).mean()
    reg = out.abs().mean()
    return mse + 0.1 * reg, {"mse": mse, "reg": reg}


def mse_loss(model, batch, info):
    out = model(batch.images)
    mse = ((out - batch.masks[:, None]) ** 2).mean()
    return mse, {"mse": mse}


def two_pass_loss(model, batch, info):
    """Two forward passes before one backward (as ``ours``'s equivariance branch); a batch-mean loss."""
    out = model(batch.images)
    flipped = model(batch.images.flip(-1))
    mse = ((out - batch.masks[:, None]) ** 2).mean()
    eqv = ((flipped - out.detach().flip(-1)) ** 2).mean()
    return mse + eqv, {"mse": mse, "eqv": eqv}


def ddp_worker(rank: int, world: int, port: int, out_root: str) -> None:
    """One rank of the 2-process gloo test (``torch.multiprocessing.spawn`` target)."""
    import os

    import torch.distributed as dist

    from benchmark.methods.training import TrainConfig, Trainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = TinyNet(dropout=0.0, batchnorm=False)
    config = TrainConfig(steps=4, batch_size=4, lr=0.05, checkpoint_every=2, log_flush_every=1)
    Trainer(model, groups, two_pass_loss, config, out_dir=f"{out_root}/run", seed=3).fit(TinyDataset(12, augment=False))
    torch.save(model.state_dict(), f"{out_root}/rank{rank}.pt")
    dist.destroy_process_group()


def contrastive_gather_worker(rank: int, world: int, out_root: str) -> None:
    """Each rank holds its half of the prototypes; the loss is computed on the gathered global batch."""

    import torch.distributed as dist

    from benchmark.methods.ours.losses import contrastive_loss
    from benchmark.methods.ours.train_step import _gather_prototypes

    # A file store instead of a TCP port: no port race with other processes on a shared machine.
    dist.init_process_group("gloo", init_method=f"file://{out_root}/store", rank=rank, world_size=world)
    full = torch.randn(6, 4, 16, generator=torch.Generator().manual_seed(0))
    local = full[rank * 3:(rank + 1) * 3].clone().requires_grad_(True)
    loss = contrastive_loss(_gather_prototypes(local), 0.19, legacy_positive=True,
                            generator=torch.Generator().manual_seed(7))  # the shared generator
    loss.backward()
    torch.save({"loss": loss.detach(), "grad": local.grad}, f"{out_root}/rank{rank}.pt")
    dist.destroy_process_group()
