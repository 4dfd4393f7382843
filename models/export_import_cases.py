"""Small PyTorch exports that carry the quirks of real exports, and their PyTorch numbers:

    test/fixtures/import/masked_decoder.onnx   2-block decoder: one registered causal-mask buffer,
        compared once (mask == 0) and used by every block's masked_fill (the export casts it to
        bool once per block), tied input/output embeddings, opset 14, training mode
    test/fixtures/import/bn_cnn_op13.onnx      Conv-BatchNorm-ReLU x2 + Linear, training-mode
        export at opset 13: BatchNormalization with 5 outputs (running mean/var updated)
    test/fixtures/import/bn_cnn_op15.onnx      the same module at opset 15 (3 outputs)
    test/fixtures/import/reference.json        inputs, logits, loss and parameter gradients
        (float64 module, ONNX initializer names), PyTorch's named_parameters and named_buffers,
        and for the CNNs the running statistics and weights after 3 SGD steps (lr 0.1)

Run with the system Python (python3-torch 1.13, python3-onnx):

    /usr/bin/python3 models/export_import_cases.py
"""

import json
import os
import sys

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

sys.dont_write_bytecode = True
from make_fixtures import enc

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "test", "fixtures", "import")

VOCAB, SEQ, D, HEADS = 32, 8, 16, 2


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(D)
        self.qkv = nn.Linear(D, 3 * D)
        self.proj = nn.Linear(D, D)
        self.ln2 = nn.LayerNorm(D)
        self.fc = nn.Linear(D, 2 * D)
        self.out = nn.Linear(2 * D, D)

    def forward(self, x, masked):
        b, t, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q = q.view(b, t, HEADS, D // HEADS).transpose(1, 2)
        k = k.view(b, t, HEADS, D // HEADS).transpose(1, 2)
        v = v.view(b, t, HEADS, D // HEADS).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / (D // HEADS) ** 0.5)
        att = att.masked_fill(masked, float("-inf"))
        y = att.softmax(dim=-1) @ v
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, D))
        return x + self.out(torch.relu(self.fc(self.ln2(x))))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, D)
        self.pos = nn.Parameter(torch.randn(1, SEQ, D) * 0.1)
        self.blocks = nn.ModuleList([Block(), Block()])
        # One causal mask for all blocks: each block compares (and slices) it again.
        self.register_buffer("mask", torch.tril(torch.ones(SEQ, SEQ)).view(1, 1, SEQ, SEQ))
        self.ln = nn.LayerNorm(D)
        self.head = nn.Linear(D, VOCAB, bias=False)
        self.head.weight = self.tok.weight  # tied

    def forward(self, ids):
        x = self.tok(ids) + self.pos
        t = ids.shape[1]
        masked = self.mask[:, :, :t, :t] == 0  # compared once, cast by every block's masked_fill
        for b in self.blocks:
            x = b(x, masked)
        return self.head(self.ln(x))


class BnCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.b1 = nn.BatchNorm2d(4, momentum=0.2)
        self.c2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.b2 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.b2(self.c2(x)))
        return self.fc(x.flatten(1))


def export(model, args, path, opset, names):
    model.train()
    torch.onnx.export(model, args, path, opset_version=opset, training=torch.onnx.TrainingMode.TRAINING,
                      do_constant_folding=False, input_names=names, output_names=["logits"])


def by_onnx_name(model, path):
    """The module's state keyed by ONNX initializer names (which match the state_dict names)."""
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    state = model.state_dict()
    for k in inits:
        if k in state:
            assert np.array_equal(inits[k], state[k].numpy()), k
    return inits


def reference(make, path, opset, x, y, names, loss_fn, steps=0):
    torch.manual_seed(0)
    m = make()
    export(m, (x,), path, opset, names)
    inits = by_onnx_name(m, path)
    m64 = make().double()
    m64.load_state_dict({k: v.double() for k, v in m.state_dict().items()})
    m64.train()
    xin = x.double() if x.is_floating_point() else x
    logits = m64(xin)
    loss = loss_fn(logits, y)
    loss.backward()
    params = dict(m64.named_parameters())
    r = {
        "model": os.path.basename(path),
        "opset": opset,
        "x": enc(x.numpy().astype(np.int32) if not x.is_floating_point() else x.numpy()),
        "y": enc(y.numpy().astype(np.int32)),
        "logits": enc(logits.detach().numpy()),
        "loss": loss.item(),
        "grads": {k: enc(p.grad.numpy()) for k, p in params.items()},
        "parameters": sorted(params),
        "buffers": sorted(k for k, _ in m64.named_buffers()),
        "initializers": sorted(inits),
    }
    if steps:
        # Training: SGD lr 0.1 on the same batch; running statistics follow each forward.
        m64.load_state_dict({k: v.double() for k, v in m.state_dict().items()})
        opt = torch.optim.SGD(m64.parameters(), lr=0.1)
        losses = []
        for _ in range(steps):
            opt.zero_grad()
            l = loss_fn(m64(xin), y)
            l.backward()
            opt.step()
            losses.append(l.item())
        r["sgd"] = {"lr": 0.1, "steps": steps, "losses": losses,
                    "state": {k: enc(v.numpy()) for k, v in m64.state_dict().items() if v.is_floating_point()}}
    print(f"{path}: loss {r['loss']:.6f}, params {len(r['parameters'])}, buffers {r['buffers']}")
    return r


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(1)
    ids = torch.randint(0, VOCAB, (3, SEQ))
    tgt = torch.randint(0, VOCAB, (3, SEQ))
    ce_seq = lambda lg, t: nn.functional.cross_entropy(lg.reshape(-1, VOCAB), t.reshape(-1))
    img = torch.rand(4, 1, 8, 8)
    lab = torch.tensor([0, 3, 1, 4])
    ref = {
        "masked_decoder": reference(Decoder, os.path.join(OUT, "masked_decoder.onnx"), 14, ids, tgt, ["ids"], ce_seq),
        "bn_cnn_op13": reference(BnCnn, os.path.join(OUT, "bn_cnn_op13.onnx"), 13, img, lab, ["x"], nn.functional.cross_entropy, 3),
        "bn_cnn_op15": reference(BnCnn, os.path.join(OUT, "bn_cnn_op15.onnx"), 15, img, lab, ["x"], nn.functional.cross_entropy, 3),
    }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
