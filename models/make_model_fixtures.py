"""PyTorch reference numbers for the CNN and GPT exports:

    models/cnn.onnx            -> test/fixtures/cnn-torch.json
    models/gpt-block.onnx      -> test/fixtures/gpt-torch.json
    models/gpt-block-op13.onnx -> test/fixtures/gpt-op13-torch.json

Run with the system Python (python3-torch, python3-onnx, dataset-fashion-mnist),
after models/export_cnn.py and models/export_gpt.py:

    /usr/bin/python3 models/make_model_fixtures.py

The file format is that of test/fixtures/mlp-torch.json, written by
models/make_fixtures.py (see its docstring; the array encoding, enc(), and the
optimizer list are imported from there): format "mpc-torch-fixture/1",
logits, loss (float64), loss_f32, grads and grads_f32_err keyed by ONNX
initializer name, and `optim` with the parameter deltas after steps 1 and 3
of SGD(momentum), Adam and AdamW on the same batch. As there, the ONNX
initializers are the source of truth: they are loaded by name into the
PyTorch module of models/export_*.py (the name sets must match exactly), and
everything is computed in float64 and repeated in float32 for the f32_err
guides.

Batches
-------
CNN: the first 8 Fashion-MNIST training images, pixels / 255, x f32
[8,1,28,28], y i32 [8]; loss = mean softmax cross-entropy over the 8.

GPT (both exports): 4 sequences of 16 bytes of /usr/share/common-licenses/GPL-3:
the training windows k = 64, 512, 1024, 1536 of src/data/text.ts's
loadTextCorpus(seq 16) (the first windows are mostly the title's spaces).
Window k is bytes [16 k, 16 k + 16) and its targets are the next bytes
[16 k + 1, 16 k + 17). batch.x is i32 [4,16] (the model's `tokens` input is
int64; the values are < 128), batch.y i32 [4,16], logits f32 [4,16,128].
loss = the mean cross-entropy over all 64 positions, i.e.
SoftmaxCrossEntropyLoss(mean) of logits reshaped to [64,128] against the
targets reshaped to [64], which is how mpc computes it.
"""

import hashlib
import json
import os
import sys
from typing import Callable

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

sys.dont_write_bytecode = True  # no models/__pycache__ from the sibling imports below
from export_cnn import build_cnn
from export_gpt import SEQ, VOCAB, build_gpt
from make_fixtures import DATA, KEEP_STEPS, OPTIMIZERS, STEPS, enc, max_err, read_idx_gz

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURES = os.path.join(ROOT, "test", "fixtures")
TEXT = "/usr/share/common-licenses/GPL-3"
CNN_BATCH = 8
GPT_WINDOWS = (64, 512, 1024, 1536)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def onnx_params(path: str) -> dict:
    m = onnx.load(path)
    return {init.name: numpy_helper.to_array(init).copy() for init in m.graph.initializer}


def build(make: Callable[[], nn.Module], params: dict, dtype: torch.dtype) -> nn.Module:
    model = make().to(dtype)
    model.train()
    state = model.state_dict()
    assert sorted(state) == sorted(params), (sorted(state), sorted(params))
    model.load_state_dict({k: torch.from_numpy(v).to(dtype) for k, v in params.items()})
    return model


def loss_and_grads(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor):
    model.zero_grad(set_to_none=True)
    logits = model(x)
    loss = loss_fn(logits, y)
    loss.backward()
    grads = {k: p.grad.detach().numpy().copy() for k, p in model.named_parameters()}
    return logits.detach().numpy(), loss.item(), grads


def run_optimizer(make_opt, make_model, params: dict, loss_fn: LossFn, x, y, dtype: torch.dtype):
    model = build(make_model, params, dtype)
    opt = make_opt(list(model.parameters()))
    losses, snaps = [], {}
    for step in range(1, STEPS + 1):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step in KEEP_STEPS:
            snaps[step] = {k: p.detach().numpy().copy() for k, p in model.named_parameters()}
    return losses, snaps, opt.defaults


def make_fixture(model_rel: str, out_name: str, make_model, loss_fn: LossFn, batch: dict,
                 x64: torch.Tensor, x32: torch.Tensor, y: torch.Tensor) -> None:
    model_path = os.path.join(ROOT, model_rel)
    params = onnx_params(model_path)
    logits64, loss64, grads64 = loss_and_grads(build(make_model, params, torch.float64), loss_fn, x64, y)
    _, loss32, grads32 = loss_and_grads(build(make_model, params, torch.float32), loss_fn, x32, y)
    with open(model_path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    fixture = {
        "format": "mpc-torch-fixture/1",
        "model": model_rel,
        "model_sha256": sha,
        "torch_version": torch.__version__,
        "compute_dtype": "float64",
        "batch": batch,
        "logits": enc(logits64),
        "loss": loss64,
        "loss_f32": loss32,
        "grads": {k: enc(v) for k, v in grads64.items()},
        "grads_f32_err": {k: max_err(grads64[k], grads32[k]) for k in grads64},
        "optim": {},
    }
    print(f"== {model_rel} -> {out_name}")
    print(f"loss float64 = {loss64!r}   float32 = {loss32!r}")
    for k, g in grads64.items():
        print(f"  grad {k:18s} shape={list(g.shape)} |g|_2={np.linalg.norm(g):.9g} "
              f"zeros={int((g == 0).sum())} f32_err={fixture['grads_f32_err'][k]:.3g}")

    for name, (desc, make_opt) in OPTIMIZERS.items():
        losses64, snaps64, hyper = run_optimizer(make_opt, make_model, params, loss_fn, x64, y, torch.float64)
        _, snaps32, _ = run_optimizer(make_opt, make_model, params, loss_fn, x32, y, torch.float32)
        hyper = {k: (list(v) if isinstance(v, tuple) else v) for k, v in hyper.items()
                 if isinstance(v, (int, float, bool, tuple)) or v is None}
        fixture["optim"][name] = {
            "torch": desc,
            "hyper": hyper,
            "losses": losses64,
            "steps": {
                str(s): {
                    "delta": {k: enc(v - params[k].astype(np.float64)) for k, v in snaps64[s].items()},
                    "f32_err": {k: max_err(v, snaps32[s][k]) for k, v in snaps64[s].items()},
                }
                for s in KEEP_STEPS
            },
        }
        print(f"  {name}: losses before steps 1..{STEPS} = {[round(l, 9) for l in losses64]}")

    out = os.path.join(FIXTURES, out_name)
    with open(out, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    size = os.path.getsize(out) / 1e6
    print(f"wrote {out} ({size:.2f} MB)")
    assert size < 5, f"{out} is {size:.2f} MB"


def cnn_fixture() -> None:
    images = read_idx_gz(os.path.join(DATA, "train-images-idx3-ubyte.gz"))
    labels = read_idx_gz(os.path.join(DATA, "train-labels-idx1-ubyte.gz"))
    x32 = (images[:CNN_BATCH].astype(np.float32) / np.float32(255.0)).reshape(CNN_BATCH, 1, 28, 28)
    y = labels[:CNN_BATCH].astype(np.int64)
    batch = {
        "source": "Fashion-MNIST train-images-idx3-ubyte.gz / train-labels-idx1-ubyte.gz, pixels / 255",
        "indices": list(range(CNN_BATCH)),
        "x": enc(x32),
        "y": enc(y.astype(np.int32)),
    }
    xt = torch.from_numpy(x32)
    make_fixture("models/cnn.onnx", "cnn-torch.json", build_cnn, nn.functional.cross_entropy,
                 batch, xt.double(), xt, torch.from_numpy(y))


def gpt_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))


def gpt_fixtures() -> None:
    with open(TEXT, "rb") as f:
        text = np.frombuffer(f.read(), dtype=np.uint8)
    assert text.max() < VOCAB, "GPL-3 is expected to be ASCII"
    starts = [SEQ * k for k in GPT_WINDOWS]
    x = np.stack([text[s : s + SEQ] for s in starts]).astype(np.int64)
    y = np.stack([text[s + 1 : s + SEQ + 1] for s in starts]).astype(np.int64)
    batch = {
        "source": f"{TEXT}: window k = bytes [16 k, 16 k + 16), targets = bytes [16 k + 1, 16 k + 17)",
        "windows": list(GPT_WINDOWS),
        "offsets": starts,
        "x": enc(x.astype(np.int32)),
        "y": enc(y.astype(np.int32)),
    }
    print("GPT inputs:", [bytes(r.astype(np.uint8)).decode("ascii") for r in x])
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for model_rel, out_name in (("models/gpt-block.onnx", "gpt-torch.json"),
                                ("models/gpt-block-op13.onnx", "gpt-op13-torch.json")):
        make_fixture(model_rel, out_name, build_gpt, gpt_loss, batch, xt, xt, yt)


def main() -> None:
    torch.use_deterministic_algorithms(True)
    cnn_fixture()
    gpt_fixtures()


if __name__ == "__main__":
    main()
