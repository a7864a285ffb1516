"""The loudness meter against absolute references, not against itself.

Two references: a 997 Hz sine of known peak level (mono, BS.1770: LUFS = peak dBFS - 3.01) and the
EBU Tech 3341 minimum-requirement cases 1-5 (stereo 1 kHz sines, expected -23.0 / -33.0 LUFS +-0.1 LU).

The pipeline measures mono: `audio.loudness_rows` on the 16 kHz downmix is what the pool stores. The
stereo cases are measured with `audio.loudness` on the two channels (BS.1770's weighted channel sum,
weight 1.0 for L and R), which is the same meter; the mono pipeline reads a downmix of two identical
channels 3.01 LU lower (the mean keeps the level of one channel, and one channel carries half the power).

The meter is pyloudnorm's K-weighting (a shelf at 1500 Hz, G = 4 dB, Q = 1/sqrt(2), re-derived for each rate):
on a 1 kHz tone it reads ~0.035 LU low at 48 kHz and ~0.066 LU low at 16 kHz, inside Tech 3341's +-0.1 LU.
"""

from __future__ import annotations

import numpy as np
import pytest

from sonify_toolkit import audio

TOLERANCE_LU = 0.1  # EBU Tech 3341, minimum requirements for the integrated loudness cases
MONO_DOWNMIX_OFFSET_LU = 10 * np.log10(2)  # 3.0103: one channel's power instead of two

# Tech 3341 table 1: (peak level dBFS, seconds) per part, and the expected integrated loudness.
TECH_3341 = {
    1: ([(-23.0, 20.0)], -23.0),
    2: ([(-33.0, 20.0)], -33.0),
    3: ([(-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0)], -23.0),
    4: ([(-72.0, 10.0), (-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0), (-72.0, 10.0)], -23.0),
    5: ([(-26.0, 20.0), (-20.0, 20.1), (-26.0, 20.0)], -23.0),
}


def sine(peak_dbfs: float, seconds: float, sr: int, freq: float = 1000.0) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (10 ** (peak_dbfs / 20) * np.sin(2 * np.pi * freq * t)).astype(np.float64)


def tech_3341_signal(case: int, sr: int) -> np.ndarray:
    """One channel of the case (both channels are identical)."""
    parts, _ = TECH_3341[case]
    return np.concatenate([sine(level, seconds, sr) for level, seconds in parts])


@pytest.mark.parametrize("sr", [16_000, 48_000])
@pytest.mark.parametrize("peak_dbfs", [-6.0, -20.0, -30.0])
def test_997_hz_sine_reads_its_rms_level(sr: int, peak_dbfs: float) -> None:
    x = sine(peak_dbfs, 5.0, sr, freq=997.0)
    expected = peak_dbfs + 20 * np.log10(1 / np.sqrt(2))  # peak - 3.01 dB
    assert audio.loudness(x, sr) == pytest.approx(expected, abs=TOLERANCE_LU)
    # the pool's vectorised meter on a 5-s window gives the same figure
    assert audio.loudness_rows(x[None, :].astype(np.float32), sr)[0] == pytest.approx(expected, abs=TOLERANCE_LU)


@pytest.mark.parametrize("sr", [16_000, 48_000])
@pytest.mark.parametrize("case", sorted(TECH_3341))
def test_ebu_tech_3341_cases(case: int, sr: int) -> None:
    channel = tech_3341_signal(case, sr)
    expected = TECH_3341[case][1]
    stereo = np.stack([channel, channel], axis=1)
    assert audio.loudness(stereo, sr) == pytest.approx(expected, abs=TOLERANCE_LU)

    # what the mono pipeline stores for the same file: the downmix, 3.01 LU below the stereo reading
    mono = audio.to_mono(stereo.astype(np.float32))
    np.testing.assert_array_equal(mono, channel.astype(np.float32))
    pool_reading = audio.loudness_rows(mono[None, :], sr)[0]
    assert pool_reading == pytest.approx(expected - MONO_DOWNMIX_OFFSET_LU, abs=TOLERANCE_LU)
    assert audio.loudness(stereo, sr) - pool_reading == pytest.approx(MONO_DOWNMIX_OFFSET_LU, abs=1e-3)


@pytest.mark.parametrize("sr", [16_000, 48_000])
def test_gating_drops_the_quiet_parts(sr: int) -> None:
    """Cases 3 and 4 differ only by parts below the relative (case 3's -36 dBFS) and absolute (-72) gates:
    the gates, not the averaging, decide the figure, so both read like case 1's steady tone."""
    steady = audio.loudness(tech_3341_signal(1, sr), sr)
    for case in (3, 4):
        assert audio.loudness(tech_3341_signal(case, sr), sr) == pytest.approx(steady, abs=0.03)
