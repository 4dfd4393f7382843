"""Export a one-block byte-level GPT to models/gpt-block.onnx (opset 17) and
models/gpt-block-op13.onnx (opset 13).

Run with the system Python that has python3-torch and python3-onnx:

    /usr/bin/python3 models/export_gpt.py

The model (GPT-2 layout, one block, no dropout at all, so a training-mode
export is deterministic):

    tokens int64 [N, 16]                      bytes 0..127 (ASCII)
    h = tok_emb[tokens] + pos_emb             Gather + Add; pos_emb is a [16, 64] parameter
    h = h + attn(ln1(h))                      pre-LayerNorm, 4 heads of 16, causal
    h = h + mlp(ln2(h))                       64 -> 256 -> GELU (erf) -> 64
    logits = head(ln_f(h))                    [N, 16, 128]

Attention: q, k, v are three separate Linear(64, 64); scores are
(q @ k^T) * 0.25 (1/sqrt(16)), plus an additive causal mask, then Softmax
over the last axis. The mask is a [16, 16] constant, 0 on and below the
diagonal and -1e4 above: exp(-1e4) is exactly 0 in float32 and float64, and
-1e4 is finite in fp16 and bf16 (and saturates to -448 in fp8 E4M3, still
far below any score), so it never turns into inf - inf = NaN. It is a
non-persistent buffer, which the exporter writes as a Constant node rather
than an initializer: every initializer is a trainable parameter.

Head reshapes use -1 for the batch and the fixed sequence length 16
(`reshape(-1, 16, 4, 16)`), so they export as one Reshape with a constant
shape, not a Shape/Gather/Concat chain.

Both exports come from the same module (torch.manual_seed(0), weights drawn
as in GPT-2: normal(0, 0.02), biases 0, LayerNorm 1/0), are written in
training mode without constant folding, so each parameter is its own named
initializer (nn.Linear weights stay [out, in], consumed through a Transpose
node and MatMul + Add, since the activations are 3-D). In opset 17 the
LayerNorms export as LayerNormalization (axis -1, epsilon 1e-5); in opset
13 as ReduceMean, Sub, Pow, Add, Sqrt, Div, Mul, Add.

Input `tokens` is int64 [N, 16] with N dynamic; output `logits` is
float [N, 16, 128].
"""

import os

import onnx
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
OUTS = {17: os.path.join(HERE, "gpt-block.onnx"), 13: os.path.join(HERE, "gpt-block-op13.onnx")}

VOCAB = 128
SEQ = 16
WIDTH = 64
HEADS = 4
MASK_NEG = -1e4

# Ops the exports may contain (see the module doc); anything else is an error.
ALLOWED_OPS = {
    "MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Softmax", "LayerNormalization",
    "ReduceMean", "Gather", "Erf", "Gelu", "Sqrt", "Pow", "Reshape", "Transpose",
    "Shape", "Unsqueeze", "Concat", "Slice", "Where", "Equal", "Constant",
    "ConstantOfShape", "Expand", "Range", "Split", "Squeeze", "Identity", "Dropout", "Cast",
}


class CausalSelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(WIDTH, WIDTH)
        self.k = nn.Linear(WIDTH, WIDTH)
        self.v = nn.Linear(WIDTH, WIDTH)
        self.proj = nn.Linear(WIDTH, WIDTH)
        self.head_dim = WIDTH // HEADS
        self.scale = 1.0 / self.head_dim ** 0.5
        above = torch.triu(torch.ones(SEQ, SEQ, dtype=torch.bool), diagonal=1)
        mask = torch.zeros(SEQ, SEQ).masked_fill(above, MASK_NEG)
        self.register_buffer("mask", mask, persistent=False)

    def heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1, SEQ, HEADS, self.head_dim).transpose(1, 2)  # [N, H, T, D]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.heads(self.q(x)), self.heads(self.k(x)), self.heads(self.v(x))
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale + self.mask.to(x.dtype)
        att = torch.softmax(scores, dim=-1)
        y = torch.matmul(att, v).transpose(1, 2).reshape(-1, SEQ, WIDTH)
        return self.proj(y)


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(WIDTH, 4 * WIDTH)
        self.act = nn.GELU()
        self.proj = nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc(x)))


class GptBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(VOCAB, WIDTH)
        self.pos_emb = nn.Parameter(torch.zeros(SEQ, WIDTH))
        self.ln1 = nn.LayerNorm(WIDTH)
        self.attn = CausalSelfAttention()
        self.ln2 = nn.LayerNorm(WIDTH)
        self.mlp = Mlp()
        self.ln_f = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.tok_emb(tokens) + self.pos_emb
        h = h + self.attn(self.ln1(h))
        h = h + self.mlp(self.ln2(h))
        return self.head(self.ln_f(h))


def build_gpt() -> GptBlock:
    torch.manual_seed(0)
    model = GptBlock()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("ln"):
                continue  # LayerNorm: weight 1, bias 0 (the defaults)
            if name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, 0.02)
    return model


def describe(path: str) -> None:
    m = onnx.load(path)
    onnx.checker.check_model(m)
    m = onnx.shape_inference.infer_shapes(m)
    ops = sorted({n.op_type for n in m.graph.node})
    print(f"wrote {path} (opset {m.opset_import[0].version}, {len(m.graph.node)} nodes)")
    print("op types:", ops)
    bad = set(ops) - ALLOWED_OPS
    if bad:
        raise SystemExit(f"{path}: ops outside the allowed list: {sorted(bad)}")
    print("initializers:")
    for init in m.graph.initializer:
        print(f"  {init.name}: {list(init.dims)} dtype={onnx.TensorProto.DataType.Name(init.data_type)}")
    for vi in list(m.graph.input) + list(m.graph.output):
        t = vi.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in t.shape.dim]
        print(f"  io {vi.name}: {dims} {onnx.TensorProto.DataType.Name(t.elem_type)}")


def main() -> None:
    model = build_gpt()
    model.train()
    dummy = torch.zeros(2, SEQ, dtype=torch.int64)
    for opset, out in OUTS.items():
        torch.onnx.export(
            model,
            (dummy,),
            out,
            input_names=["tokens"],
            output_names=["logits"],
            dynamic_axes={"tokens": {0: "N"}, "logits": {0: "N"}},
            opset_version=opset,
            training=torch.onnx.TrainingMode.TRAINING,
            do_constant_folding=False,
            export_params=True,
        )
        describe(out)


if __name__ == "__main__":
    main()
