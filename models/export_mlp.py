"""Export the bundled MLP (784 -> 256 -> ReLU -> 10) to models/mlp.onnx.

Run with the system Python that has python3-torch and python3-onnx:

    /usr/bin/python3 models/export_mlp.py

The module is built after torch.manual_seed(0), so the weights are
reproducible. The export keeps training mode and skips constant folding, so
every parameter stays its own named initializer (e.g. `1.weight`) and no
Gemm weight gets pre-transposed into an anonymous constant.

Input `input` is float [N, 1, 28, 28] and output `logits` is [N, 10], with
the batch dimension N dynamic.
"""

import os

import onnx
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "mlp.onnx")


def build_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )


def main() -> None:
    model = build_mlp()
    model.train()
    dummy = torch.zeros(2, 1, 28, 28, dtype=torch.float32)
    torch.onnx.export(
        model,
        (dummy,),
        OUT,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        opset_version=13,
        training=torch.onnx.TrainingMode.TRAINING,
        do_constant_folding=False,
        export_params=True,
    )

    m = onnx.load(OUT)
    onnx.checker.check_model(m)
    print(f"wrote {OUT} (opset {m.opset_import[0].version})")
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


if __name__ == "__main__":
    main()
