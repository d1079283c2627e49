"""benchmarks/noise_clips.py (issue 4's "silence and noise" on one-second clips of real
noise): the clips it cuts and the bound it reports."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import noise_clips  # noqa: E402
from speech.audio import read_wav, write_wav  # noqa: E402


def test_the_bound_is_clopper_pearsons():
    """None seen in n: 1 - 0.025 ** (1 / n) in closed form; more seen, a higher bound; the
    share itself always under it."""
    assert noise_clips.upper95(0, 556) == pytest.approx(1 - 0.025 ** (1 / 556), rel=1e-6)
    b = [noise_clips.upper95(k, 576) for k in range(5)]
    assert b == sorted(b) and all(k / 576 < u for k, u in enumerate(b))
    assert noise_clips.upper95(3, 576) == pytest.approx(0.0151, abs=2e-4)  # as reported
    assert noise_clips.upper95(4, 4) == 1.0


def test_every_whole_second_at_each_gain(tmp_path):
    """A 2.5 s recording gives two one-second clips at each gain, the louder one the same
    samples times four (clipped to int16), and the silence clips are copied beside them;
    no recordings: an error naming the folder."""
    rng = np.random.default_rng(3)
    (tmp_path / "noise").mkdir()
    x = rng.normal(0, 3000, 40000).astype(np.int16)
    write_wav(tmp_path / "noise" / "hum.wav", x)
    (tmp_path / "speech_commands" / "_silence_").mkdir(parents=True)
    write_wav(tmp_path / "speech_commands" / "_silence_" / "1.wav", x[:16000])
    n = noise_clips.cut_clips(tmp_path, tmp_path / "out", 1.0)
    assert n == 4
    quiet = read_wav(tmp_path / "out" / "_noise_" / "hum_x1_001.wav")[0]
    loud = read_wav(tmp_path / "out" / "_noise_" / "hum_x4_001.wav")[0]
    assert np.array_equal(quiet, x[16000:32000])
    assert np.array_equal(loud, np.clip(x[16000:32000].astype(np.float64) * 4, -32768,
                                        32767).astype(np.int16))
    assert (tmp_path / "out" / "_silence_" / "1.wav").is_file()
    with pytest.raises(SystemExit, match="no noise recordings"):
        noise_clips.cut_clips(tmp_path / "nothing", tmp_path / "out2", 1.0)
