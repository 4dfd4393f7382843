"""PyTorch baseline for the fine-tuning chain of test/finetune.test.ts.

Run with the system Python (python3-torch, python3-onnx, dataset-fashion-mnist):

    /usr/bin/python3 models/finetune_baseline.py

Schedule, the same as the test's (batch 128, Adam lr 1e-3, a fresh optimizer per stage, the
last partial batch dropped), with the same sample order: mpc's training loop shuffles with a
seeded mulberry32 generator (Fisher-Yates), reproduced here for the test's seeds (0 for
pretraining, 1 for fine-tuning). The order matters: over one epoch, different shuffles of
the same recipe give test accuracies more than 1 pp apart.
  1. the bundled MLP (models/mlp.onnx initial weights), 1 epoch in fp32 on the 60000
     Fashion-MNIST training images; test accuracy on the 10000 test images;
  2. fine-tuned from those weights for 1 epoch under bf16 autocast on a shifted task, the
     labels permuted y -> (y + 1) % 10, on the first FINETUNE_SAMPLES training images;
     test accuracy on the test images with the permuted labels.
For reference the fixture also holds runs with torch.randperm orders (seeds 0-2).
Writes test/fixtures/export/finetune-torch.json.
"""

import gzip
import json
import os

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "test", "fixtures", "export", "finetune-torch.json")
DATA = "/usr/share/datasets/fashion-mnist"
BATCH = 128
FINETUNE_SAMPLES = 20000
SEEDS = (0, 1, 2)
PRETRAIN_SEED = 0
FINETUNE_SEED = 1


def mulberry32_order(seed: int, n: int) -> torch.Tensor:
    """The sample order of mpc's training loop (src/runtime/train.ts) for one epoch."""
    a = seed & 0xFFFFFFFF

    def rand() -> float:
        nonlocal a
        a = (a + 0x6D2B79F5) & 0xFFFFFFFF
        t = a
        t = ((t ^ (t >> 15)) * (t | 1)) & 0xFFFFFFFF
        t ^= (t + (((t ^ (t >> 7)) * (t | 61)) & 0xFFFFFFFF)) & 0xFFFFFFFF
        return ((t ^ (t >> 14)) & 0xFFFFFFFF) / 4294967296

    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = int(rand() * (i + 1))
        order[i], order[j] = order[j], order[i]
    return torch.tensor(order)


def read_idx_gz(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(split: str):
    x = read_idx_gz(os.path.join(DATA, f"{split}-images-idx3-ubyte.gz")).astype(np.float32) / 255
    y = read_idx_gz(os.path.join(DATA, f"{split}-labels-idx1-ubyte.gz")).astype(np.int64)
    return torch.from_numpy(x.reshape(-1, 1, 28, 28)), torch.from_numpy(y)


def mlp() -> nn.Sequential:
    m = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    init = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in onnx.load(os.path.join(HERE, "mlp.onnx")).graph.initializer}
    m.load_state_dict(init)
    return m


def epoch(m: nn.Module, x, y, order: torch.Tensor, bf16: bool) -> None:
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    for s in range(len(x) // BATCH):
        idx = order[s * BATCH:(s + 1) * BATCH]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(m(x[idx]).float(), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def accuracy(m: nn.Module, x, y) -> float:
    with torch.no_grad():
        return (m(x).argmax(1) == y).float().mean().item()


def main() -> None:
    torch.set_num_threads(2)
    xtr, ytr = load("train")
    xte, yte = load("t10k")
    shift = lambda y: (y + 1) % 10

    def chain(pre_order, fine_order) -> dict:
        m = mlp()
        epoch(m, xtr, ytr, pre_order, bf16=False)
        pretrained = accuracy(m, xte, yte)
        before = accuracy(m, xte, shift(yte))
        epoch(m, xtr[:FINETUNE_SAMPLES], shift(ytr[:FINETUNE_SAMPLES]), fine_order, bf16=True)
        return {"pretrained": pretrained, "shifted_before": before, "finetuned": accuracy(m, xte, shift(yte))}

    baseline = chain(mulberry32_order(PRETRAIN_SEED, len(xtr)), mulberry32_order(FINETUNE_SEED, FINETUNE_SAMPLES))
    print("mpc order:", baseline, flush=True)
    runs = []
    for seed in SEEDS:
        g = torch.Generator().manual_seed(seed)
        runs.append({"seed": seed, **chain(torch.randperm(len(xtr), generator=g), torch.randperm(FINETUNE_SAMPLES, generator=g))})
        print(runs[-1], flush=True)
    mean = {k: float(np.mean([r[k] for r in runs])) for k in ("pretrained", "shifted_before", "finetuned")}
    out = {
        "schedule": {
            "model": "models/mlp.onnx",
            "batch": BATCH,
            "optimizer": "Adam(lr=1e-3), fresh per stage",
            "pretrain": "1 epoch fp32, 60000 Fashion-MNIST training images",
            "finetune": f"1 epoch bf16 autocast, labels (y + 1) % 10, first {FINETUNE_SAMPLES} training images",
            "evaluation": "10000 test images (labels permuted for the fine-tuned stage)",
            "order": f"mpc's mulberry32 shuffle, seed {PRETRAIN_SEED} (pretraining) and {FINETUNE_SEED} (fine-tuning)",
        },
        "torch": torch.__version__,
        "baseline": baseline,
        "randperm_runs": runs,
        "randperm_mean": mean,
    }
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}: {baseline}")


if __name__ == "__main__":
    main()
