"""Train the workshop's digits CNN (4 conv blocks of 8 channels + a linear head) on scikit-learn's 8×8 digits.

Reproducible (seeded, single-threaded), about 10 s on 2 CPU cores. Trains on every digit outside the 'eval'
split of `workbench.zoo.planted.digits` (the 256 calibration digits included, as calibrating on training data is
the usual practice); eval accuracy ≈ 94 %. Writes workbench/zoo/data/digits-cnn/weights.npz with the ONNX
initializer names `workbench.zoo.planted.trained` expects (block{i}.weight/bias, head.weight/bias).

    python datasets/train_digits_cnn.py
"""
from __future__ import annotations

import numpy as np
import torch

from workbench.zoo.planted import TRAINED_WEIGHTS, digits

SEED, EPOCHS, BLOCKS, CHANNELS = 0, 80, 4, 8


def main() -> None:
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = ((raw.images.astype(np.float32) / 16.0) - 0.5)[:, None]
    y = raw.target.astype(np.int64)
    train = np.r_[0:256, 768:len(x)]
    layers, cin = [], 1
    for _ in range(BLOCKS):
        layers += [torch.nn.Conv2d(cin, CHANNELS, 3, padding=1), torch.nn.ReLU()]
        cin = CHANNELS
    model = torch.nn.Sequential(*layers, torch.nn.Flatten(), torch.nn.Linear(CHANNELS * 64, 10))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, EPOCHS)
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
    generator = torch.Generator().manual_seed(SEED)
    for _ in range(EPOCHS):
        model.train()
        order = torch.randperm(len(xt), generator=generator)
        for i in range(0, len(xt), 32):
            idx = order[i:i + 32]
            dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=generator))  # shift by a pixel
            loss = torch.nn.functional.cross_entropy(model(torch.roll(xt[idx], (dy, dx), (2, 3))), yt[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    model.eval()
    evaluation = digits("eval")
    with torch.no_grad():
        accuracy = (model(torch.from_numpy(evaluation.inputs["image"])).argmax(1).numpy() == evaluation.labels).mean()
    convs = [m for m in model if isinstance(m, torch.nn.Conv2d)]
    weights = {}
    for i, conv in enumerate(convs):
        weights[f"block{i}.weight"] = conv.weight.detach().numpy()
        weights[f"block{i}.bias"] = conv.bias.detach().numpy()
    weights["head.weight"], weights["head.bias"] = model[-1].weight.detach().numpy(), model[-1].bias.detach().numpy()
    TRAINED_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    np.savez(TRAINED_WEIGHTS, **weights)
    print(f"eval accuracy {accuracy:.4f}; wrote {TRAINED_WEIGHTS}")


if __name__ == "__main__":
    main()
