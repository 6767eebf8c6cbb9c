"""RunningStats against plain float64 NumPy on the same arrays, batch by batch."""
import numpy as np
import pytest

from workbench.core.metrics import RunningStats


@pytest.mark.parametrize("shape", [(4, 8, 5, 5), (6, 16, 12), (9, 7)])
def test_channel_energy_and_amax_match_float64_over_batches(shape):
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal(shape).astype(np.float32) * rng.uniform(0.1, 50, shape[1 if len(shape) == 4 else -1])
               .reshape((1, -1, 1, 1) if len(shape) == 4 else (1,) * (len(shape) - 1) + (-1,)) for _ in range(3)]
    stats = RunningStats()
    for batch in batches:
        stats.update(batch, batch * 1.01, shape[0])
        stats.track_channels(batch)
    whole = np.concatenate(batches).astype(np.float64)
    axis = 1 if whole.ndim == 4 else whole.ndim - 1
    expected = np.square(whole).sum(axis=tuple(i for i in range(whole.ndim) if i != axis))
    np.testing.assert_allclose(stats.channel_sq, expected, rtol=1e-6)
    assert stats.ref_amax == float(np.abs(whole).max())
    rms = np.sqrt(expected / (whole.size / whole.shape[axis]))
    np.testing.assert_allclose(stats.channel_rms(), rms, rtol=1e-6)
