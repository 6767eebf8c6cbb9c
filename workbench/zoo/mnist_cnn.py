"""The bundled `mnist-cnn`: architecture (for the PyTorch framework check) and its real-MNIST data files."""
from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).parent / "data" / "mnist-cnn"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def build_module():
    """The PyTorch module the bundled ONNX was exported from (weights in DATA_DIR/weights.npz)."""
    import torch
    from torch import nn

    class MnistCnn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            )
            self.classifier = nn.Sequential(
                nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10)
            )

        def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - ONNX input name
            return self.classifier(self.features(input))

    return MnistCnn()


def load_module():
    """The trained PyTorch module, weights read from the committed .npz (no pickle)."""
    import numpy as np
    import torch

    module = build_module()
    weights = np.load(DATA_DIR / "weights.npz")
    module.load_state_dict({k: torch.from_numpy(weights[k]) for k in weights.files})
    return module.eval()


def _dataset(split: str):
    from workbench.model.data import load_npz
    from workbench.model.loading import from_onnx

    return load_npz(DATA_DIR / f"{split}.npz", from_onnx(DATA_DIR / "model.onnx", name="mnist-cnn").inputs)


def entry():
    from workbench.analysis.evaluate import labelled_top1, top1_agreement
    from workbench.model.loading import from_onnx
    from workbench.zoo.base import ZooEntry

    return ZooEntry(
        name="mnist-cnn",
        description="Small CNN trained on 4000 real MNIST digits (datasets/train_mnist_cnn.py); 98.3 % FP32 top-1",
        export=lambda: from_onnx(DATA_DIR / "model.onnx", name="mnist-cnn", source="zoo"),
        calibration=lambda: _dataset("calib"), evaluation=lambda: _dataset("eval"),
        metrics={"top1": labelled_top1, "top1_agreement": top1_agreement},
        torch_module=load_module, class_names=lambda: [str(i) for i in range(10)],
    )
