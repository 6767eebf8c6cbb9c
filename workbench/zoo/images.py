"""Real photographs that ship with scikit-image and scikit-learn, cropped and normalised ImageNet-style."""
from __future__ import annotations

import numpy as np

from workbench.zoo.base import require

# Colour photos bundled with scikit-image (no download), plus scikit-learn's two sample photos.
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
                  "colorwheel", "logo", "camera", "horse", "coins", "clock", "moon", "brick", "grass", "gravel",
                  "page", "text")
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def photos() -> list[np.ndarray]:
    """Every photo as float32 HxWx3 in [0, 1] (grayscale replicated, alpha dropped)."""
    data = require("skimage.data", "pip install 'workbench[zoo]' (scikit-image)")
    sklearn_datasets = require("sklearn.datasets", "pip install 'workbench[zoo]' (scikit-learn)")
    out = []
    for name in SKIMAGE_PHOTOS:
        image = getattr(data, name)()
        out.append(_rgb(image))
    out += [_rgb(img) for img in sklearn_datasets.load_sample_images().images]
    return out


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3]
    return image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else max(1.0, float(image.max())))


def crops(count: int, seed: int, size: int = 224) -> np.ndarray:
    """`count` random crops (20-100 % of the short side, random position and flip), resized, normalised: NCHW."""
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    images = photos()
    batch = np.empty((count, 3, size, size), np.float32)
    for i in range(count):
        img = images[i % len(images)]
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.2, 1.0))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = resize(img[y:y + side, x:x + side], (size, size), anti_aliasing=True)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        batch[i] = ((crop - MEAN) / STD).transpose(2, 0, 1)
    return batch
