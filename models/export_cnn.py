"""Export the bundled small CNN to models/cnn.onnx.

    conv(1 -> 8, 3x3, pad 1) -> ReLU -> max-pool 2x2 -> flatten -> linear(1568 -> 10)

Run with the system Python that has python3-torch and python3-onnx:

    /usr/bin/python3 models/export_cnn.py

Like models/export_mlp.py: the module is built after torch.manual_seed(0), so
the weights are reproducible, and the export keeps training mode and skips
constant folding, so every parameter stays its own named initializer
(`conv.weight` [8,1,3,3], `conv.bias` [8], `fc.weight` [10,1568] used by a
Gemm with transB=1, `fc.bias` [10]).

Opset 13 (the MLP's opset, and the oldest the mpc importer must accept).
Input `input` is float [N, 1, 28, 28] and output `logits` is [N, 10], with
the batch dimension N dynamic.
"""

import os
from collections import OrderedDict

import onnx
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "cnn.onnx")
OPSET = 13


def build_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(1, 8, kernel_size=3, padding=1)),
        ("relu", nn.ReLU()),
        ("pool", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(8 * 14 * 14, 10)),
    ]))


def describe(path: str) -> None:
    m = onnx.load(path)
    onnx.checker.check_model(m)
    m = onnx.shape_inference.infer_shapes(m)
    print(f"wrote {path} (opset {m.opset_import[0].version})")
    print("op types:", sorted({n.op_type for n in m.graph.node}))
    print("initializers:")
    for init in m.graph.initializer:
        print(f"  {init.name}: {list(init.dims)} dtype={onnx.TensorProto.DataType.Name(init.data_type)}")
    print("nodes:")
    for node in m.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        print(f"  {node.op_type} {list(node.input)} -> {list(node.output)} {attrs}")
    for vi in list(m.graph.input) + list(m.graph.output):
        dims = [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
        print(f"  io {vi.name}: {dims}")


def main() -> None:
    model = build_cnn()
    model.train()
    dummy = torch.zeros(2, 1, 28, 28, dtype=torch.float32)
    torch.onnx.export(
        model,
        (dummy,),
        OUT,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        opset_version=OPSET,
        training=torch.onnx.TrainingMode.TRAINING,
        do_constant_folding=False,
        export_params=True,
    )
    describe(OUT)


if __name__ == "__main__":
    main()
