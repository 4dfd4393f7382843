"""Export the model zoo (models/zoo/*.onnx) and its PyTorch fixtures (test/fixtures/zoo/).

Run with the system Python that has python3-torch, python3-torchvision and python3-onnx:

    /usr/bin/python3 models/zoo/export_zoo.py [NAME ...]

The modules are in models/zoo/zoo_models.py (random weights from a fixed seed). Each model
is exported at two opsets in training mode without constant folding
(training=TrainingMode.TRAINING, do_constant_folding=False: every parameter stays a named
initializer, BatchNormalization computes batch statistics and, at opset 13, has five
outputs), and some also in eval mode with constant folding (TrainingMode.EVAL,
do_constant_folding=True, as most users export: BatchNorm folded into the convolutions,
weight transposes folded into new initializers). Every export has a dynamic batch axis.

models/zoo/zoo.json lists the variants:

    {"format": "mpc-zoo/1", "variants": [
      {"id": "resnet18-op13", "model": "resnet18", "file": "models/zoo/resnet18-op13.onnx",
       "opset": 13, "mode": "train", "fixture": "zoo/resnet18.json",
       "inputs": ["input"], "output": "logits", "batch": 4}, ...]}

A fixture (test/fixtures/zoo/<model>.json for the training-mode exports,
<model>-eval.json for the eval-mode one) holds, with arrays encoded as in
models/make_fixtures.py (enc: raw-deflate base64 of little-endian f32 / i32):

    format          "mpc-zoo-fixture/1"
    model, mode     the zoo model; "train" (module.train()) or "eval" (module.eval())
    torch_version
    inputs          {ONNX input name: array} (integer inputs as i32)
    labels          i32, the output's shape without the class axis
    output          {"f64": ..., "f32": ...}: the forward output of a float64 copy of the
                    module and of the float32 module, in the fixture's mode (what the
                    training step computes); output_f32_err = max |f32 - f64|
    output_eval     the same with the module in eval mode (what inference computes:
                    BatchNorm on the running statistics of the file), output_eval_f32_err
    loss            {"f64": x, "f32": x}: F.cross_entropy(output.reshape(-1, C),
                    labels.reshape(-1)), mean
    grads           {param: array} d loss / d param from the float64 copy, keyed by the
                    PyTorch parameter name; grads_f32 the same from the float32 module;
                    grads_f32_err {param: max |f32 - f64|}
    running         (train fixtures of BatchNorm models) {buffer: array}: every
                    running_mean / running_var after the one training-mode forward
                    (float64), running_f32_err likewise
    parameters      PyTorch's named_parameters() names (what an optimizer trains)
    buffers         PyTorch's named_buffers() names (never trained)
    variants        {ONNX file: {"initializers": {name: origin}}} where origin says
                    where each float initializer of that file came from:
                    {"param": n} or {"buffer": n} (same values as PyTorch's tensor n, which
                    is also its name in a training-mode export), {"param": n,
                    "transpose": true} (a folded weight transpose), or {"derived": true}
                    (folded from something else, e.g. BatchNorm into a convolution).

Gradients of an ONNX initializer are the gradients of the PyTorch parameter it came from
(transposed where the origin says so). The export prints every initializer whose name is
not the name of the PyTorch tensor it holds, and every parameter that reaches no
initializer.
"""

import copy
import hashlib
import json
import os
import sys
from typing import Dict, List

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from make_fixtures import enc  # noqa: E402  (models/make_fixtures.py)
from zoo_models import MODELS, break_ties  # noqa: E402

FIXTURES = os.path.join(ROOT, "test", "fixtures", "zoo")

# model -> (training-mode opsets, eval-mode opsets)
VARIANTS: Dict[str, tuple] = {
    "resnet18": ((13, 17), (17,)),
    "mobilenet_v2": ((13, 17), ()),
    "mobilenet_v3_small": ((14, 17), ()),
    "efficientnet_b0": ((13, 17), ()),
    "squeezenet1_1": ((13, 17), ()),
    "vit": ((14, 17), (17,)),
    "bert": ((13, 17), (17,)),
    "gpt2": ((14, 17), (17,)),
    "lstm": ((13, 14), ()),
    "gru": ((14, 17), ()),
    "audio_cnn": ((13, 17), ()),
    "unet": ((13, 17), ()),
}


def max_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def reference(base: torch.nn.Module, inputs: List[torch.Tensor], labels: torch.Tensor, dtype, train: bool):
    model = copy.deepcopy(base).to(dtype)
    model.train(train)
    model.zero_grad(set_to_none=True)
    xs = [x.to(dtype) if x.is_floating_point() else x for x in inputs]
    out = model(*xs)
    loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), labels.reshape(-1))
    loss.backward()
    grads = {}
    for n, p in model.named_parameters():
        grads[n] = p.grad.detach().numpy().copy() if p.grad is not None else np.zeros(tuple(p.shape))
    running = {n: b.detach().numpy().copy() for n, b in model.named_buffers()
               if n.endswith("running_mean") or n.endswith("running_var")}
    return out.detach().numpy(), loss.item(), grads, running


def export(base, inputs, names, path, opset, train: bool) -> None:
    model = copy.deepcopy(base)  # a training-mode trace updates BatchNorm statistics
    model.train(train)
    dyn = {n: {0: "N"} for n in names}
    dyn["logits"] = {0: "N"}
    torch.onnx.export(
        model, tuple(inputs), path,
        input_names=names, output_names=["logits"], dynamic_axes=dyn,
        opset_version=opset,
        training=torch.onnx.TrainingMode.TRAINING if train else torch.onnx.TrainingMode.EVAL,
        do_constant_folding=not train,
        export_params=True,
    )
    onnx.checker.check_model(onnx.load(path))


def origins(path: str, state: Dict[str, np.ndarray], params: List[str]) -> Dict[str, dict]:
    """Where each float initializer of `path` came from (see the module doc)."""
    kind = lambda n: "param" if n in params else "buffer"  # noqa: E731
    out = {}
    for init in onnx.load(path).graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype.kind != "f":
            continue
        o = None
        if init.name in state and state[init.name].shape == a.shape and np.array_equal(state[init.name], a):
            o = {kind(init.name): init.name}
        else:
            for n, v in state.items():
                if v.shape == a.shape and np.array_equal(v, a):
                    o = {kind(n): n}
                    break
                if v.ndim == 2 and v.T.shape == a.shape and np.array_equal(v.T, a):
                    o = {kind(n): n, "transpose": True}
                    break
        out[init.name] = o or {"derived": True}
    return out


def report(path: str, org: Dict[str, dict], params: List[str]) -> None:
    m = onnx.load(path)
    ops = sorted({n.op_type for n in m.graph.node})
    size = os.path.getsize(path) / 1e3
    print(f"  wrote {os.path.relpath(path, ROOT)} ({size:.0f} kB, {len(m.graph.node)} nodes): {' '.join(ops)}")
    for name, o in org.items():
        src = o.get("param") or o.get("buffer")
        if src != name:
            print(f"    initializer {name} holds {'a folded value' if o.get('derived') else ('the transpose of ' if o.get('transpose') else '') + str(src)}")
    reached = {o.get("param") for o in org.values()}
    for p in params:
        if p not in reached:
            print(f"    parameter {p} reaches no initializer")


def make(name: str, manifest: list) -> None:
    builder, input_names = MODELS[name]
    base, inputs, labels = builder()
    break_ties(base)
    base.train()
    params = [n for n, _ in base.named_parameters()]
    buffers = [n for n, _ in base.named_buffers()]
    state0 = {k: v.detach().numpy().copy() for k, v in base.state_dict().items() if v.is_floating_point()}
    n_params = sum(p.numel() for p in base.parameters())
    print(f"== {name}: {n_params} parameters, {len(buffers)} buffers")
    train_opsets, eval_opsets = VARIANTS[name]
    os.makedirs(FIXTURES, exist_ok=True)
    exported = base  # every file is exported from the module as built
    for mode, opsets in (("train", train_opsets), ("eval", eval_opsets)):
        if not opsets:
            continue
        train = mode == "train"
        base, state = exported, state0
        if train and any(n.endswith("running_mean") for n in buffers):
            # A training-mode export traces a training-mode forward, which updates the
            # BatchNorm statistics before they are written: the file's running_mean/var are
            # those of the module after one forward. The reference starts from the file's.
            probe = os.path.join(FIXTURES, f".{name}.probe.onnx")
            export(exported, inputs, input_names, probe, train_opsets[0], True)
            written = {i.name: numpy_helper.to_array(i) for i in onnx.load(probe).graph.initializer}
            os.remove(probe)
            base = copy.deepcopy(exported)
            with torch.no_grad():
                for n, b in base.named_buffers():
                    if n in written and b.is_floating_point():
                        b.copy_(torch.from_numpy(written[n].copy()))
            state = {k: v.detach().numpy().copy() for k, v in base.state_dict().items() if v.is_floating_point()}
        out64, loss64, grads64, run64 = reference(base, inputs, labels, torch.float64, train)
        out32, loss32, grads32, run32 = reference(base, inputs, labels, torch.float32, train)
        # What mpc's inference graph computes: the module in eval mode (BatchNorm on the
        # running statistics the file holds).
        ev64, _, _, _ = reference(base, inputs, labels, torch.float64, False)
        ev32, _, _, _ = reference(base, inputs, labels, torch.float32, False)
        fixture_rel = f"zoo/{name}{'' if train else '-eval'}.json"
        fx = {
            "format": "mpc-zoo-fixture/1",
            "model": name,
            "mode": mode,
            "torch_version": torch.__version__,
            "inputs": {n: enc(x.numpy()) for n, x in zip(input_names, inputs)},
            "labels": enc(labels.numpy()),
            "output": {"f64": enc(out64), "f32": enc(out32)},
            "output_f32_err": max_err(out64, out32),
            "output_eval": {"f64": enc(ev64), "f32": enc(ev32)},
            "output_eval_f32_err": max_err(ev64, ev32),
            "loss": {"f64": loss64, "f32": loss32},
            "grads": {k: enc(v) for k, v in grads64.items()},
            "grads_f32": {k: enc(v) for k, v in grads32.items()},
            "grads_f32_err": {k: max_err(grads64[k], grads32[k]) for k in grads64},
            "parameters": params,
            "buffers": buffers,
            "variants": {},
        }
        if train and run64:
            fx["running"] = {k: enc(v) for k, v in run64.items()}
            fx["running_f32_err"] = {k: max_err(run64[k], run32[k]) for k in run64}
        print(f" {mode}: loss f64 {loss64:.6f} f32 {loss32:.6f}, output f32 err {fx['output_f32_err']:.2e}")
        for opset in opsets:
            vid = f"{name}-op{opset}{'' if train else '-eval'}"
            rel = f"models/zoo/{vid}.onnx"
            path = os.path.join(ROOT, rel)
            export(exported, inputs, input_names, path, opset, train)
            org = origins(path, state, params)
            report(path, org, params)
            with open(path, "rb") as f:
                sha = hashlib.sha256(f.read()).hexdigest()
            fx["variants"][rel] = {"sha256": sha, "initializers": org}
            manifest.append({"id": vid, "model": name, "file": rel, "opset": opset, "mode": mode,
                             "fixture": fixture_rel, "inputs": input_names, "output": "logits",
                             "batch": int(inputs[0].shape[0])})
        out = os.path.join(ROOT, "test", "fixtures", fixture_rel)
        with open(out, "w") as f:
            json.dump(fx, f, separators=(",", ":"))
            f.write("\n")
        print(f"  wrote {os.path.relpath(out, ROOT)} ({os.path.getsize(out) / 1e3:.0f} kB)")


def main() -> None:
    torch.use_deterministic_algorithms(True)
    names = sys.argv[1:] or list(MODELS)
    manifest_path = os.path.join(HERE, "zoo.json")
    manifest = []
    if os.path.exists(manifest_path) and sys.argv[1:]:
        with open(manifest_path) as f:
            manifest = [v for v in json.load(f)["variants"] if v["model"] not in names]
    for name in names:
        make(name, manifest)
    order = list(MODELS)
    manifest.sort(key=lambda v: (order.index(v["model"]), v["mode"] != "train", v["opset"]))
    with open(manifest_path, "w") as f:
        json.dump({"format": "mpc-zoo/1", "variants": manifest}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
