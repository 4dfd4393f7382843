"""A GPT of any depth and width (the layout of models/export_gpt.py, with N
blocks), exported by PyTorch as the reference for mpc's TypeScript generator
(src/models/gpt.ts), plus the bytes PyTorch's autograd saves for backward.

Run with the system Python that has python3-torch and python3-onnx:

    /usr/bin/python3 models/export_gpt_deep.py

It writes two fixtures and no model file:

test/fixtures/gpt-deep-torch.json
    The graph of a small 2-block GPT (FIXTURE_CONFIG) exported at opset 17 and
    13 (training mode, no constant folding), one entry per opset: every node in
    order as {op, inputs, attrs}, every initializer {name, dims, dtype}, and
    the graph inputs/outputs {name, elemType, dims}. Node inputs are written
    without node names, so a generator that names its nodes differently
    compares equal: "init:NAME" (an initializer), "input:NAME" (a graph input)
    or "node:I:J" (output J of node I in the list). Attributes are plain
    values; a tensor attribute (Constant's `value`) is {dims, dtype, values}.
    Float values are float32 numbers written as the shortest float64 repr.

test/fixtures/gpt12-saved-bytes.json
    The tensors PyTorch's autograd saves for backward during one training
    forward (model + mean softmax cross-entropy) in float32, measured with
    torch.autograd.graph.saved_tensors_hooks, for GPT12 at batch 8 and the
    bundled MLP and CNN (models/export_mlp.py, export_cnn.py) at batch 128.
    stepPeakBytes is PyTorch's peak for the same forward and a backward, as a
    like-for-like figure for a step's whole transient memory (mpc's planned
    pool holds its parameter gradients too): the most bytes malloc holds at
    once (glibc mallinfo2, in use plus mmapped) after any aten op of one
    forward + loss + backward, less what it held before the step (the
    parameters, Adam's state, the batch); the .grad buffers are freed before
    it (zero_grad(set_to_none=True)), so they count, as do the temporaries
    that outlive an op. stepPeakWithAdamBytes adds torch.optim.Adam's step
    (foreach=False: its per-parameter temporaries). Two warm-up steps first.
    savedBytes counts every distinct storage once (keyed by its data
    pointer; a view saved alongside its base counts once, with the size of
    the whole storage); savedBytesNoDedupe sums numel * element size over
    every saved tensor, however often it is saved. paramBytes is the part of
    savedBytes that is parameter storage (weights saved by a Linear or
    LayerNorm, which exist anyway); activationBytes = savedBytes - paramBytes.

The model (GPT-2 layout, pre-LayerNorm, no dropout, so a training-mode export
is deterministic):

    tokens int64 [N, T]
    h = tok_emb[tokens] + pos_emb             Gather + Add; pos_emb is a [T, D] parameter
    for each block b:
        h = h + attn(ln1(h))                  separate q, k, v Linear(D, D); causal
        h = h + mlp(ln2(h))                   D -> 4D -> GELU (erf) -> D
    logits = head(ln_f(h))                    [N, T, V]

Scores are (q @ k^T) * (1/sqrt(D/H)) + mask, the mask a non-persistent [T, T]
buffer (0 on and below the diagonal, -1e4 above) that the exporter writes as a
Constant node in every block. Weights normal(0, 0.02), biases 0, LayerNorm
1/0, after torch.manual_seed(seed).
"""

import ctypes
import json
import os
import sys

import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

sys.dont_write_bytecode = True  # no models/__pycache__ from the sibling imports below
from export_cnn import build_cnn
from export_mlp import build_mlp

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "test", "fixtures")
MASK_NEG = -1e4

# Small enough for a fast test; head_dim 12 makes the attention scale inexact in float32.
FIXTURE_CONFIG = {"layers": 2, "width": 48, "heads": 4, "context": 8, "vocab": 64}
GPT12 = {"layers": 12, "width": 256, "heads": 8, "context": 64, "vocab": 512}
GPT12_BATCH = 8
SMALL_BATCH = 128


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, context: int) -> None:
        super().__init__()
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.proj = nn.Linear(width, width)
        self.width, self.heads, self.context = width, heads, context
        self.head_dim = width // heads
        self.scale = 1.0 / self.head_dim ** 0.5
        above = torch.triu(torch.ones(context, context, dtype=torch.bool), diagonal=1)
        mask = torch.zeros(context, context).masked_fill(above, MASK_NEG)
        self.register_buffer("mask", mask, persistent=False)

    def split(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1, self.context, self.heads, self.head_dim).transpose(1, 2)  # [N, H, T, Dh]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale + self.mask.to(x.dtype)
        att = torch.softmax(scores, dim=-1)
        y = torch.matmul(att, v).transpose(1, 2).reshape(-1, self.context, self.width)
        return self.proj(y)


class Mlp(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, 4 * width)
        self.act = nn.GELU()
        self.proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc(x)))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, context: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, context)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = Mlp(width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(self.ln1(h))
        return h + self.mlp(self.ln2(h))


class Gpt(nn.Module):
    def __init__(self, layers: int, width: int, heads: int, context: int, vocab: int) -> None:
        super().__init__()
        assert width % heads == 0, "width must be a multiple of heads"
        self.tok_emb = nn.Embedding(vocab, width)
        self.pos_emb = nn.Parameter(torch.zeros(context, width))
        self.blocks = nn.ModuleList([Block(width, heads, context) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.tok_emb(tokens) + self.pos_emb
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_f(h))


def build_gpt(layers: int, width: int, heads: int, context: int, vocab: int, seed: int = 0) -> Gpt:
    torch.manual_seed(seed)
    model = Gpt(layers, width, heads, context, vocab)
    norms = {name for name, mod in model.named_modules() if isinstance(mod, nn.LayerNorm)}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.rsplit(".", 1)[0] in norms:
                continue  # LayerNorm: weight 1, bias 0 (the defaults)
            if name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, 0.02)
    return model


# ---- graph description ---------------------------------------------------------------------

def attr_value(a: onnx.AttributeProto):
    if a.type == onnx.AttributeProto.TENSOR:
        arr = numpy_helper.to_array(a.t)
        return {"dims": list(a.t.dims), "dtype": onnx.TensorProto.DataType.Name(a.t.data_type),
                "values": [v.item() for v in arr.ravel()]}
    v = onnx.helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, list):
        return [x.decode() if isinstance(x, bytes) else x for x in v]
    return v


def describe_graph(m: onnx.ModelProto) -> dict:
    g = m.graph
    inits = {t.name for t in g.initializer}
    inputs = {vi.name for vi in g.input}
    produced = {}
    nodes = []
    for i, n in enumerate(g.node):
        refs = []
        for name in n.input:
            if name in inits:
                refs.append(f"init:{name}")
            elif name in inputs:
                refs.append(f"input:{name}")
            else:
                refs.append(produced[name])
        for j, out in enumerate(n.output):
            produced[out] = f"node:{i}:{j}"
        nodes.append({"op": n.op_type, "inputs": refs, "attrs": {a.name: attr_value(a) for a in n.attribute}})

    def io(vi: onnx.ValueInfoProto) -> dict:
        t = vi.type.tensor_type
        return {"name": vi.name, "elemType": onnx.TensorProto.DataType.Name(t.elem_type),
                "dims": [d.dim_param if d.HasField("dim_param") else d.dim_value for d in t.shape.dim]}

    return {
        "irVersion": m.ir_version,
        "opset": m.opset_import[0].version,
        "nodes": nodes,
        "initializers": [{"name": t.name, "dims": list(t.dims), "dtype": onnx.TensorProto.DataType.Name(t.data_type)}
                         for t in g.initializer],
        "inputs": [io(vi) for vi in g.input if vi.name not in inits],
        "outputs": [io(vi) for vi in g.output],
    }


def export(model: nn.Module, context: int, opset: int, path: str) -> onnx.ModelProto:
    model.train()
    torch.onnx.export(
        model, (torch.zeros(2, context, dtype=torch.int64),), path,
        input_names=["tokens"], output_names=["logits"],
        dynamic_axes={"tokens": {0: "N"}, "logits": {0: "N"}},
        opset_version=opset, training=torch.onnx.TrainingMode.TRAINING,
        do_constant_folding=False, export_params=True,
    )
    m = onnx.load(path)
    onnx.checker.check_model(m)
    return m


# ---- saved tensors ---------------------------------------------------------------------------

def saved_bytes(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> dict:
    model.train()
    params = {p.data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}
    total = {"bytes": 0, "count": 0}

    def pack(t: torch.Tensor) -> torch.Tensor:
        total["bytes"] += t.numel() * t.element_size()
        total["count"] += 1
        s = t.storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    loss.backward()  # the saved tensors were enough for a backward
    saved = sum(storages.values())
    param = sum(b for ptr, b in storages.items() if ptr in params)
    return {"savedBytes": saved, "savedBytesNoDedupe": total["bytes"], "paramBytes": param,
            "activationBytes": saved - param, "savedTensors": total["count"], "distinctStorages": len(storages)}


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


_LIBC = None


def _malloc_in_use() -> int:
    global _LIBC
    if _LIBC is None:  # loaded once: this runs after every aten op
        _LIBC = ctypes.CDLL("libc.so.6")
        _LIBC.mallinfo2.restype = _Mallinfo2
    m = _LIBC.mallinfo2()
    return m.uordblks + m.hblkhd


class _PeakAfterEachOp(TorchDispatchMode):
    """The most bytes malloc holds after any aten op run under it."""

    def __init__(self) -> None:
        super().__init__()
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, _malloc_in_use())
        return out


def step_peak(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, classes: int) -> dict:
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=False)

    def loss_of() -> torch.Tensor:
        return F.cross_entropy(model(x).reshape(-1, classes), labels.reshape(-1))

    for _ in range(2):
        opt.zero_grad(set_to_none=True)
        loss_of().backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    base = _malloc_in_use()
    with _PeakAfterEachOp() as fb:
        loss_of().backward()
    with _PeakAfterEachOp() as adam:
        opt.step()
    return {"stepPeakBytes": fb.peak - base, "stepPeakWithAdamBytes": max(fb.peak, adam.peak) - base}


def measure_saved() -> dict:
    torch.manual_seed(1)
    c = GPT12
    gpt = build_gpt(**c)
    tokens = torch.randint(0, c["vocab"], (GPT12_BATCH, c["context"]))
    targets = torch.randint(0, c["vocab"], (GPT12_BATCH, c["context"]))
    out = {
        "format": "mpc-torch-saved-bytes/1",
        "torchVersion": torch.__version__,
        "dtype": "float32",
        "note": "one training forward incl. mean softmax cross-entropy; savedBytes dedupes by storage",
        "config": c,
        "batch": GPT12_BATCH,
        "parameters": sum(p.numel() for p in gpt.parameters()),
        **saved_bytes(gpt, tokens, targets),
        **step_peak(gpt, tokens, targets, c["vocab"]),
    }
    images = torch.rand(SMALL_BATCH, 1, 28, 28)
    classes = torch.randint(0, 10, (SMALL_BATCH,))
    for name, build in (("mlp", build_mlp), ("cnn", build_cnn)):
        model = build()
        out[name] = {"batch": SMALL_BATCH, "parameters": sum(p.numel() for p in model.parameters()),
                     **saved_bytes(model, images, classes), **step_peak(model, images, classes, 10)}
    return out


def main() -> None:
    import tempfile

    c = FIXTURE_CONFIG
    fixture = {"format": "mpc-torch-graph/1", "torchVersion": torch.__version__, "config": c, "exports": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for opset in (17, 13):
            m = export(build_gpt(**c), c["context"], opset, os.path.join(tmp, f"gpt-{opset}.onnx"))
            fixture["exports"][str(opset)] = describe_graph(m)
            print(f"opset {opset}: {len(m.graph.node)} nodes, {len(m.graph.initializer)} initializers")
    path = os.path.join(FIXTURES, "gpt-deep-torch.json")
    with open(path, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print(f"wrote {path}")

    saved = measure_saved()
    path = os.path.join(FIXTURES, "gpt12-saved-bytes.json")
    with open(path, "w") as f:
        json.dump(saved, f, indent=2)
        f.write("\n")
    print(f"wrote {path}")
    print(json.dumps(saved, indent=2))


if __name__ == "__main__":
    main()
