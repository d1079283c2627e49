"""The session benchmark's steady background (benchmarks/speech_live_latency.py
--background steady): the same commands in one room's noise, at one level, each command at
the asked SNR over it."""
from __future__ import annotations

import numpy as np

import benchmarks.speech_bench as sb
import benchmarks.speech_live_latency as sl
from speech.audio import active_power

SR = 16000


def test_a_steady_background_holds_one_level_and_each_command_at_its_snr(tmp_path):
    rng = np.random.default_rng(4)
    noises = [rng.normal(0, 50, 40 * SR), rng.normal(0, 900, 40 * SR)]  # 25 dB apart
    clean = []
    for i, (text, voice) in enumerate([("assistant, show fascia", "en-us"),
                                       ("assistant, freeze", "en-gb"),
                                       ("assistant, needle depth", "en-us"),
                                       ("assistant, hide overlay", "en-gb")]):
        x = sb.synth(text, voice, 150 + 10 * i, 50, tmp_path)
        x = np.clip(x * (0.3 + 0.4 * i), -32768, 32767).astype(np.int16)  # four levels
        lead, tail = int(0.6 * SR), int(0.8 * SR)
        clean.append((x, lead, lead + len(x) + tail))
    for snr in (20.0, None):  # None: quiet, the noise 40 dB down
        y = sl.steady(clean, snr, noises)
        assert y.dtype == np.int16 and len(y) == sum(n for _, _, n in clean)
        assert np.abs(y.astype(np.int32)).max() <= 32000
        leads, snrs = levels(y, clean)
        # the two recordings in turn (two commands each), at one level
        assert max(leads) - min(leads) < 0.5, leads
        want = 40.0 if snr is None else snr
        assert all(want - 1.0 < s < want + 1.5 for s in snrs), snrs


def levels(y: np.ndarray, clean) -> tuple[list[float], list[float]]:
    """Each command's noise level before it (dB) and its SNR over that noise."""
    pos, leads, snrs = 0, [], []
    for x, lead, n in clean:
        seg = y[pos:pos + n].astype(np.float64)
        noise = float((seg[:lead] ** 2).mean())  # the noise alone before the command
        leads.append(10 * np.log10(noise))
        snrs.append(10 * np.log10(active_power(seg[lead:lead + len(x)]) / noise))
        pos += n
    return leads, snrs
