"""A CNN with BatchNorm exported in training mode at opset 13 (BatchNormalization with 5
outputs, as PyTorch writes every classic CNN at opsets 11-13), and PyTorch's numbers for it:

    models/bn-cnn-op13.onnx
    test/fixtures/bn-cnn-torch.json:
      running:  the BatchNorm running statistics (and loss) after 3 SGD steps (lr 0.1) on the
                first 3 x 128 Fashion-MNIST training images in file order (SGD: its update is
                smooth in the gradient, so float32 and float64 trajectories stay within 1e-6;
                Adam's first steps are lr * sign(g) and amplify rounding differences);
      epoch:    test accuracy after 1 epoch of Fashion-MNIST (batch 128, Adam lr 1e-3, the
                training set shuffled, 468 steps), evaluated in eval mode (running
                statistics), for 3 shuffling seeds (the spread of the recipe itself).

Run with the system Python (python3-torch 1.13, python3-onnx, dataset-fashion-mnist):

    /usr/bin/python3 models/export_bn_cnn.py
"""

import json
import os
import sys

import numpy as np
import torch
from torch import nn

sys.dont_write_bytecode = True
from make_fixtures import DATA, enc, read_idx_gz

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BATCH = 128


class BnCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = nn.functional.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(x.flatten(1))


def load(split):
    x = read_idx_gz(os.path.join(DATA, f"{split}-images-idx3-ubyte.gz")).astype(np.float32) / np.float32(255)
    y = read_idx_gz(os.path.join(DATA, f"{split}-labels-idx1-ubyte.gz")).astype(np.int64)
    return torch.from_numpy(x.reshape(-1, 1, 28, 28)), torch.from_numpy(y)


def main():
    torch.manual_seed(0)
    model = BnCnn()
    path = os.path.join(HERE, "bn-cnn-op13.onnx")
    model.train()
    torch.onnx.export(model, torch.zeros(BATCH, 1, 28, 28), path, opset_version=13,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                      input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
    # Exporting in training mode runs the module once, which moves its running statistics:
    # the ONNX initializers hold the state after that, and so does the reference.
    init = {k: v.clone() for k, v in model.state_dict().items()}
    xs, ys = load("train")
    xt, yt = load("t10k")

    # Running statistics after 3 steps on the first batches, in float64, and the same in
    # float32: PyTorch's own float32 error is the floor of what a float32 program can match.
    states, losses = {}, []
    for dt in (torch.float64, torch.float32):
        m = BnCnn().to(dt)
        m.load_state_dict({k: v.to(dt) if v.is_floating_point() else v for k, v in init.items()})
        m.train()
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        for s in range(3):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(m(xs[s * BATCH:(s + 1) * BATCH].to(dt)), ys[s * BATCH:(s + 1) * BATCH])
            loss.backward()
            opt.step()
            if dt == torch.float64:
                losses.append(loss.item())
        states[dt] = {k: v.double().numpy() for k, v in m.state_dict().items() if "running" in k}
    running = {k: enc(v.astype(np.float32)) for k, v in states[torch.float64].items()}
    f32_err = {k: float(np.abs(states[torch.float32][k] - v).max() / np.abs(v).max()) for k, v in states[torch.float64].items()}
    print("float32 error of the running statistics (relative to max):", f32_err)

    accs = []
    for seed in range(3):
        m = BnCnn()
        m.load_state_dict(init)
        m.train()
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(xs), generator=g)
        for s in range(len(xs) // BATCH):
            idx = order[s * BATCH:(s + 1) * BATCH]
            opt.zero_grad()
            nn.functional.cross_entropy(m(xs[idx]), ys[idx]).backward()
            opt.step()
        m.eval()
        with torch.no_grad():
            accs.append(float((m(xt).argmax(1) == yt).float().mean()))
        print(f"seed {seed}: test accuracy {accs[-1]:.4f}")
    out = {
        "format": "mpc-torch-fixture/bn-cnn",
        "model": "models/bn-cnn-op13.onnx",
        "torch_version": torch.__version__,
        "running": {"batch": BATCH, "steps": 3, "optimizer": "torch.optim.SGD(lr=0.1)", "losses": losses, "state": running, "f32_err": f32_err},
        "epoch": {"batch": BATCH, "steps": len(xs) // BATCH, "optimizer": "torch.optim.Adam(lr=1e-3)", "test_accuracy": accs},
    }
    with open(os.path.join(ROOT, "test", "fixtures", "bn-cnn-torch.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
