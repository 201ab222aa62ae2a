"""DDP with two CPU processes (gloo): both ranks end with identical weights, equal to one process
training on the same global batches (mean loss: the average of the two half-batch gradients is the
full-batch gradient; two forward passes per step as in ``ours``), and only rank 0 writes."""

from __future__ import annotations

import json
import socket

import torch
import torch.multiprocessing as mp

from _training_fixtures import TinyDataset, TinyNet, ddp_worker, groups, two_pass_loss
from benchmark.methods.training import TrainConfig, Trainer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_gloo_processes_match_single_process(tmp_path):
    mp.spawn(ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name

    torch.manual_seed(0)
    single = TinyNet(dropout=0.0, batchnorm=False)
    config = TrainConfig(steps=4, batch_size=4, lr=0.05, checkpoint_every=2, log_flush_every=1)
    Trainer(single, groups, two_pass_loss, config, out_dir=tmp_path / "single", seed=3).fit(TinyDataset(12, augment=False))
    torch.manual_seed(0)
    initial = TinyNet(dropout=0.0, batchnorm=False).state_dict()
    for name, value in single.state_dict().items():
        torch.testing.assert_close(rank0[name], value, rtol=1e-5, atol=1e-6)
        assert not torch.equal(value, initial[name])  # it did train

    info = json.loads((tmp_path / "run" / "train_info.json").read_text())
    assert (info["world_size"], info["global_batch"], info["per_rank_batch"]) == (2, 4, 2)
    logged = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    assert len(logged) == 1 + 4  # header + one row per step, written once (rank 0 only)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_0000002.pt", "step_0000004.pt"]
