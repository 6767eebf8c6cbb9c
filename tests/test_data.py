"""Bad calibration/evaluation data gets one line naming the problem."""
import numpy as np
import pytest

from workbench.core.errors import WorkbenchError
from workbench.model.data import load_npz, synthetic


@pytest.fixture
def good(mnist_calib):
    return mnist_calib.inputs["input"][:8]


@pytest.mark.parametrize("arrays, message", [
    (lambda g: {"x": g}, r"missing input\(s\) \['input'\]"),
    (lambda g: {"input": g, "extra": g}, r"unexpected key\(s\) \['extra'\]"),
    (lambda g: {"input": g.astype(np.float64)}, "dtype float64, the model expects float32"),
    (lambda g: {"input": g[:, 0]}, "expects rank 4"),
    (lambda g: {"input": np.zeros((8, 1, 32, 32), np.float32)}, "axis 2 must be 28"),
    (lambda g: {"input": np.where(np.arange(g.size).reshape(g.shape) == 3, np.nan, g).astype(np.float32)},
     "1 NaN/Inf"),
])
def test_bad_npz(tmp_path, mnist, good, arrays, message):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays(good))
    with pytest.raises(WorkbenchError, match=message):
        load_npz(path, mnist.inputs)


def test_good_npz_with_labels(tmp_path, mnist, good):
    path = tmp_path / "data.npz"
    np.savez(path, input=good, labels=np.arange(8))
    data = load_npz(path, mnist.inputs)
    assert len(data) == 8 and list(data.labels) == list(range(8))
    assert [b["input"].shape[0] for b in data.batches(3)] == [3, 3, 2]


def test_not_an_npz(tmp_path, mnist):
    path = tmp_path / "data.npz"
    path.write_text("hello")
    with pytest.raises(WorkbenchError, match="not a readable .npz"):
        load_npz(path, mnist.inputs)


def test_synthetic_data_warns_loudly(mnist):
    with pytest.warns(UserWarning, match="RANDOM synthetic data"):
        data = synthetic(mnist.inputs, samples=4)
    assert data.inputs["input"].shape == (4, 1, 28, 28) and data.synthetic


def _rss_file_mb() -> float:
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("RssFile")) / 1024


def test_uncompressed_npz_is_memory_mapped_and_batches_release_their_pages(tmp_path, mnist):
    """--calib-data with 1,000 photos is ~600 MB: an uncompressed .npz is mapped, not read, and each batch drops
    the pages it read, so the process never holds the whole set (compressed members are read as before)."""
    name = mnist.inputs[0].name
    digits = np.random.default_rng(0).random((20000, 1, 28, 28), dtype=np.float32)  # 60 MB
    np.savez(tmp_path / "big.npz", **{name: digits}, labels=np.arange(20000))
    np.savez_compressed(tmp_path / "small.npz", **{name: digits[:10]})
    before = _rss_file_mb()
    data = load_npz(tmp_path / "big.npz", mnist.inputs)  # validating reads every value once
    peak = _rss_file_mb()
    total = 0.0
    for batch in data.batches(2000):
        total += float(batch[name].sum())
        peak = max(peak, _rss_file_mb())
    assert total == pytest.approx(float(digits.sum(dtype=np.float64)), rel=1e-4)
    assert np.array_equal(data.labels, np.arange(20000))
    assert peak - before < 30, (before, peak)  # one 6 MB batch at a time, not the 60 MB set
    compressed = load_npz(tmp_path / "small.npz", mnist.inputs)
    assert np.array_equal(compressed.inputs[name], digits[:10])
