"""The audio maths the pool relies on: loudness, resampling, downmix, segmentation, decoding."""

from __future__ import annotations

import io

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from sonify_toolkit import audio
from sonify_toolkit.settings import SAMPLE_RATE, SEGMENT_FRAMES


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spectrum)])


@pytest.mark.parametrize("sr", [16_000, 48_000])
def test_sine_normalised_to_minus_23_reads_minus_23(sr: int) -> None:
    x = sine(1000, sr, 5.0)
    y = audio.normalize_loudness(x, audio.loudness(x, sr), -23.0)
    assert audio.loudness(y, sr) == pytest.approx(-23.0, abs=0.1)


def test_loudness_agrees_with_pyloudnorm_at_minus_30() -> None:
    x = sine(440, SAMPLE_RATE, 5.0, amp=0.2) + 0.01 * np.random.default_rng(0).standard_normal(5 * SAMPLE_RATE)
    reference = pyloudnorm.Meter(SAMPLE_RATE)
    y = pyloudnorm.normalize.loudness(x.astype(np.float64), reference.integrated_loudness(x.astype(np.float64)), -30.0)
    assert reference.integrated_loudness(y) == pytest.approx(-30.0, abs=0.01)
    assert audio.loudness(y.astype(np.float32)) == pytest.approx(-30.0, abs=0.1)


def test_silence_is_minus_inf_and_peak_is_max_abs() -> None:
    assert audio.loudness(np.zeros(SEGMENT_FRAMES, np.float32)) == float("-inf")
    assert audio.peak(np.array([0.1, -0.7, 0.3], np.float32)) == pytest.approx(0.7)


@pytest.mark.parametrize(("sr_in", "freq"), [(44_100, 1000.0), (8_000, 1000.0), (48_000, 3150.0), (22_050, 440.0)])
def test_resample_keeps_the_tone_frequency(sr_in: int, freq: float) -> None:
    y = audio.resample(sine(freq, sr_in, 2.0), sr_in, SAMPLE_RATE)
    assert len(y) == 2 * SAMPLE_RATE
    assert y.dtype == np.float32
    assert peak_hz(y, SAMPLE_RATE) == pytest.approx(freq, abs=1.0)
    # no aliasing or gain change to speak of: the RMS of a sine stays amp/sqrt(2)
    assert np.sqrt(np.mean(y[1000:-1000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_downsampling_removes_content_above_the_new_nyquist() -> None:
    y = audio.resample(sine(12_000, 44_100, 1.0), 44_100, SAMPLE_RATE)  # 12 kHz cannot exist at 16 kHz
    assert np.max(np.abs(y[500:-500])) < 0.01


def test_mono_is_the_mean_of_channels() -> None:
    rng = np.random.default_rng(0)
    stereo = rng.uniform(-1, 1, (1000, 3)).astype(np.float32)
    np.testing.assert_allclose(audio.to_mono(stereo), stereo.mean(axis=1), rtol=1e-6)
    mono = stereo[:, 0]
    assert audio.to_mono(mono) is mono


@pytest.mark.parametrize(
    ("frames", "expected"),
    [(1, 1), (SEGMENT_FRAMES - 1, 1), (SEGMENT_FRAMES, 1), (SEGMENT_FRAMES + 1, 2), (34 * 16_000, 7)],
)
def test_segment_count(frames: int, expected: int) -> None:
    assert audio.num_segments(frames) == expected


def test_last_window_is_zero_padded_and_reports_its_true_length() -> None:
    x = np.ones(2 * SEGMENT_FRAMES + 123, np.float32)
    full, n_full = audio.window(x, 1)
    last, n_last = audio.window(x, 2)
    assert n_full == SEGMENT_FRAMES and np.all(full == 1)
    assert n_last == 123 and last.shape == (SEGMENT_FRAMES,)
    assert np.all(last[:123] == 1) and np.all(last[123:] == 0)


def test_decode_reads_bytes_and_paths_alike(tmp_path) -> None:
    x = np.stack([sine(500, 32_000, 1.0), sine(500, 32_000, 1.0) * 0.5], axis=1)
    path = tmp_path / "x.flac"
    sf.write(path, x, 32_000, subtype="PCM_24")
    from_path, sr = audio.decode(path)
    from_bytes, sr2 = audio.decode(path.read_bytes())
    assert sr == sr2 == 32_000 and from_path.shape == (32_000, 2)
    np.testing.assert_array_equal(from_path, from_bytes)
    np.testing.assert_allclose(from_path, x, atol=1e-6)


def test_decode_refuses_truncated_files_and_hides_object_addresses() -> None:
    buf = io.BytesIO()
    sf.write(buf, sine(440, 44_100, 3.0), 44_100, format="WAV")
    data = buf.getvalue()
    with pytest.raises(audio.AudioDecodeError, match="truncated"):
        audio.decode(data[: len(data) // 2])
    with pytest.raises(audio.AudioDecodeError) as info:
        audio.decode(b"not audio at all" * 20)
    assert "0x" not in str(info.value)


def test_mix_sums_and_only_scales_down_to_avoid_clipping() -> None:
    a, b = np.full(10, 0.3, np.float32), np.full(10, 0.4, np.float32)
    out, gain_db = audio.mix([a, b])
    assert gain_db == 0.0 and np.allclose(out, 0.7)
    out, gain_db = audio.mix([a * 3, b * 3])
    assert audio.peak(out) == pytest.approx(1.0) and gain_db == pytest.approx(20 * np.log10(1 / 2.1), abs=1e-4)


def test_vectorised_loudness_matches_pyloudnorm_row_by_row() -> None:
    """The pool measures all of a file's windows at once; each must read what pyloudnorm reads alone."""
    rng = np.random.default_rng(0)
    rows = []
    for level in (1.0, 0.1, 1e-3, 3e-4, 1e-4):  # down to the -70 LUFS absolute gate
        x = level * rng.standard_normal(SEGMENT_FRAMES)
        x[: rng.integers(0, SEGMENT_FRAMES)] *= rng.choice([0.0, 1e-3])  # quiet starts exercise the gates
        rows.append(x)
    rows.append(np.zeros(SEGMENT_FRAMES))
    tail = np.zeros(SEGMENT_FRAMES)
    tail[:3000] = sine(1000, SAMPLE_RATE, 3000 / SAMPLE_RATE)  # a zero-padded last segment
    rows.append(tail)
    windows = np.stack(rows).astype(np.float32)
    meter = pyloudnorm.Meter(SAMPLE_RATE)
    expected = np.array([meter.integrated_loudness(w.astype(np.float64)) for w in windows])
    got = audio.loudness_rows(windows)
    assert np.array_equal(np.isfinite(got), np.isfinite(expected)) and np.isneginf(got[5])
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(audio.loudness_rows(windows, chunk_rows=2), got)
    at_48k = np.stack([sine(1000, 48_000, 5.0, amp=0.1)])
    assert audio.loudness_rows(at_48k, 48_000)[0] == pytest.approx(audio.loudness(at_48k[0], 48_000), abs=1e-9)


def test_vectorised_loudness_refuses_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(n, frames\)"):
        audio.loudness_rows(np.zeros(SEGMENT_FRAMES, np.float32))
    with pytest.raises(ValueError, match="shorter than one"):
        audio.loudness_rows(np.zeros((1, 100), np.float32))
    assert audio.loudness_rows(np.zeros((0, SEGMENT_FRAMES), np.float32)).shape == (0,)
