"""Test fixtures made by Python reference implementations.

1. PyTorch reference numbers for models/mlp.onnx -> test/fixtures/mlp-torch.json
   (format below).
2. NumPy-written archives for the .npz reader -> test/fixtures/numpy-sample.npz
   (numpy.savez, stored entries) and test/fixtures/numpy-sample-compressed.npz
   (numpy.savez_compressed, deflated entries). Both hold the arrays of
   numpy_sample_arrays(); the compressed one has an extra `big` entry
   (arange(1000) % 7 as int32) so deflate has something to do.

Run with the system Python (python3-torch, python3-onnx, dataset-fashion-mnist):

    /usr/bin/python3 models/make_fixtures.py

The ONNX initializers are the source of truth: they are loaded from
models/mlp.onnx into an nn.Sequential of the same structure (the ONNX Gemm
nodes use transB=1, so a weight is [out, in] exactly as in nn.Linear).
The batch is the first 8 Fashion-MNIST training images, pixels / 255.

All reference numbers are computed in float64 (from the float32 weights and
pixels, which are exact in float64) and rounded to float32 only when stored.
The same computation is repeated in float32, and the largest absolute
difference between the two is recorded beside each tensor as `f32_err`: a
guide for how far an honest float32 implementation may drift.

File format (plain JSON)
------------------------
An array is encoded as

    {"dtype": "f32" | "i32", "shape": [d0, d1, ...], "deflate_b64": "<base64>"}

where deflate_b64 is base64 of the raw-deflate stream (RFC 1951, no zlib or
gzip wrapper; node:zlib inflateRawSync, Python zlib.decompress(b, -15)) of
the little-endian bytes of the C-order data. Keys of `grads` and of the
optimizer snapshots are ONNX initializer names.

    {
      "format": "mpc-torch-fixture/1",
      "model": "models/mlp.onnx",
      "model_sha256": "<hex>",
      "torch_version": "...",
      "compute_dtype": "float64",
      "batch": {"source": "...", "indices": [0, ..., 7],
                "x": f32 [8,1,28,28], "y": i32 [8]},
      "logits": f32 [8,10],
      "loss": <number>,              # mean softmax cross-entropy, float64
      "loss_f32": <number>,          # the same computed in float32
      "grads": {name: f32 array},    # d loss / d param at the initial params
      "grads_f32_err": {name: <number>},
      "optim": {
        "<sgd|adam|adamw>": {
          "torch": "torch.optim.SGD(lr=0.05, momentum=0.9)",   # how it was built
          "hyper": {...},                # every hyperparameter, defaults included
          "losses": [l1, l2, l3],        # loss before step 1, 2, 3 (float64)
          "steps": {
            "1": {"delta": {name: f32 array}, "f32_err": {name: <number>}},
            "3": {...}
          }
        }
      }
    }

The initial parameters are not repeated here: they are the initializers of
models/mlp.onnx (checked by model_sha256). Each optimizer starts from them
and takes its steps on the same batch: forward, loss, backward,
optimizer.step(). After steps 1 and 3 the file stores
delta = params_after_step - initial_params, computed in float64 and rounded
to float32, so params_after_step = initial + delta to well within one
float32 ulp of the float64 result. Deltas (many of them exact zeros or,
for Adam, close to +-lr) compress far better than the parameters, which keeps
the file under 5 MB.
"""

import base64
import gzip
import hashlib
import json
import os
import zlib

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODEL = os.path.join(HERE, "mlp.onnx")
OUT = os.path.join(ROOT, "test", "fixtures", "mlp-torch.json")
DATA = "/usr/share/datasets/fashion-mnist"
BATCH = 8
STEPS = 3
KEEP_STEPS = (1, 3)

OPTIMIZERS = {
    "sgd": ("torch.optim.SGD(lr=0.05, momentum=0.9)", lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9)),
    "adam": ("torch.optim.Adam(lr=1e-3)", lambda ps: torch.optim.Adam(ps, lr=1e-3)),
    "adamw": ("torch.optim.AdamW(lr=1e-3, weight_decay=0.01)", lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01)),
}


def enc(a: np.ndarray) -> dict:
    if a.dtype.kind == "f":
        arr, dtype = np.ascontiguousarray(a, dtype="<f4"), "f32"
    elif a.dtype.kind in "iu":
        assert a.min() >= -(2**31) and a.max() < 2**31
        arr, dtype = np.ascontiguousarray(a, dtype="<i4"), "i32"
    else:
        raise TypeError(a.dtype)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = deflate.compress(arr.tobytes()) + deflate.flush()
    return {"dtype": dtype, "shape": list(arr.shape), "deflate_b64": base64.b64encode(packed).decode("ascii")}


def read_idx_gz(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    assert raw[0] == 0 and raw[1] == 0 and raw[2] == 0x08, path
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def onnx_params() -> dict:
    m = onnx.load(MODEL)
    return {init.name: numpy_helper.to_array(init).copy() for init in m.graph.initializer}


def build(params: dict, dtype: torch.dtype) -> nn.Sequential:
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)).to(dtype)
    state = model.state_dict()
    assert sorted(state) == sorted(params), (sorted(state), sorted(params))
    model.load_state_dict({k: torch.from_numpy(v).to(dtype) for k, v in params.items()})
    return model


def loss_and_grads(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor):
    model.zero_grad(set_to_none=True)
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y)
    loss.backward()
    grads = {k: p.grad.detach().numpy().copy() for k, p in model.named_parameters()}
    return logits.detach().numpy(), loss.item(), grads


def run_optimizer(make, params: dict, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype):
    model = build(params, dtype)
    opt = make(list(model.parameters()))
    losses, snaps = [], {}
    for step in range(1, STEPS + 1):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x.to(dtype)), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step in KEEP_STEPS:
            snaps[step] = {k: p.detach().numpy().copy() for k, p in model.named_parameters()}
    return losses, snaps, opt.defaults


def max_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def numpy_sample_arrays() -> dict:
    return {
        "f4": (np.arange(6, dtype="<f4") / 4).reshape(2, 3),
        "f8": np.array([np.pi, -np.e, 1e300], dtype="<f8"),
        "f2": np.array([1.0, 0.5, -2.0, 65504.0, 2.0**-24, np.inf], dtype="<f2"),
        "i8": np.array([-3, 2**31 - 1, 0, -(2**31)], dtype="<i8"),
        "i4": np.array([[7, -8], [9, -10]], dtype="<i4"),
        "u1": np.array([0, 255, 7], dtype="|u1"),
        "b1": np.array([True, False, True], dtype="|b1"),
        "scalar": np.array(42.5, dtype="<f8"),
        "empty": np.zeros((0, 3), dtype="<f4"),
    }


def write_numpy_samples() -> None:
    out_dir = os.path.dirname(OUT)
    os.makedirs(out_dir, exist_ok=True)
    arrays = numpy_sample_arrays()
    np.savez(os.path.join(out_dir, "numpy-sample.npz"), **arrays)
    np.savez_compressed(os.path.join(out_dir, "numpy-sample-compressed.npz"),
                        **arrays, big=np.arange(1000, dtype="<i4") % 7)
    print("wrote numpy-sample.npz and numpy-sample-compressed.npz")


def main() -> None:
    write_numpy_samples()
    torch.use_deterministic_algorithms(True)
    params = onnx_params()
    images = read_idx_gz(os.path.join(DATA, "train-images-idx3-ubyte.gz"))
    labels = read_idx_gz(os.path.join(DATA, "train-labels-idx1-ubyte.gz"))
    x32 = (images[:BATCH].astype(np.float32) / np.float32(255.0)).reshape(BATCH, 1, 28, 28)
    y = labels[:BATCH].astype(np.int64)
    xt, yt = torch.from_numpy(x32), torch.from_numpy(y)

    logits64, loss64, grads64 = loss_and_grads(build(params, torch.float64), xt.double(), yt)
    logits32, loss32, grads32 = loss_and_grads(build(params, torch.float32), xt, yt)

    with open(MODEL, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    fixture = {
        "format": "mpc-torch-fixture/1",
        "model": "models/mlp.onnx",
        "model_sha256": sha,
        "torch_version": torch.__version__,
        "compute_dtype": "float64",
        "batch": {
            "source": "Fashion-MNIST train-images-idx3-ubyte.gz / train-labels-idx1-ubyte.gz, pixels / 255",
            "indices": list(range(BATCH)),
            "x": enc(x32),
            "y": enc(y.astype(np.int32)),
        },
        "logits": enc(logits64),
        "loss": loss64,
        "loss_f32": loss32,
        "grads": {k: enc(v) for k, v in grads64.items()},
        "grads_f32_err": {k: max_err(grads64[k], grads32[k]) for k in grads64},
        "optim": {},
    }

    print(f"batch labels: {y.tolist()}")
    print(f"loss float64 = {loss64!r}   float32 = {loss32!r}")
    print("logits[0] =", np.array2string(logits64[0], precision=6))
    for k, g in grads64.items():
        print(f"grad {k:9s} shape={list(g.shape)} |g|_2={np.linalg.norm(g):.9g} sum={g.sum():.9g} "
              f"zeros={int((g == 0).sum())} f32_err={fixture['grads_f32_err'][k]:.3g}")

    for name, (desc, make) in OPTIMIZERS.items():
        losses64, snaps64, hyper = run_optimizer(make, params, xt, yt, torch.float64)
        _, snaps32, _ = run_optimizer(make, params, xt, yt, torch.float32)
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
        print(f"{name}: losses before steps 1..{STEPS} = {[round(l, 9) for l in losses64]}")
        for s in KEEP_STEPS:
            errs = fixture["optim"][name]["steps"][str(s)]["f32_err"]
            print(f"  after step {s}: max |f64 - f32| per param = " + ", ".join(f"{k}:{e:.3g}" for k, e in errs.items()))

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
