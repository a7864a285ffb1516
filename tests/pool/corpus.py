"""A deterministic little collection of good and bad recordings shared by the pool and machinery tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

# name -> (sample rate, channels, format, subtype, seconds, kind); kind "silence" is all zeros
GOOD = {
    "tones/a_16k_mono_short.wav": (16_000, 1, "WAV", "PCM_16", 3.0, "tone"),
    "tones/b_44k_stereo_exact10.flac": (44_100, 2, "FLAC", "PCM_24", 10.0, "tone"),
    "tones/c_48k_mono_long.wav": (48_000, 1, "WAV", "FLOAT", 23.3, "noise"),
    "tones/d_22k_stereo.ogg": (22_050, 2, "OGG", "VORBIS", 6.0, "tone"),
    "tones/e_8k_u8.wav": (8_000, 1, "WAV", "PCM_U8", 5.0, "tone"),
    "tones/f_32k_4ch.aiff": (32_000, 4, "AIFF", "PCM_16", 7.5, "noise"),
    "quiet/g_silence_then_tone.wav": (16_000, 1, "WAV", "PCM_16", 12.0, "silence_then_tone"),
    "quiet/h_all_silent.flac": (24_000, 1, "FLAC", "PCM_16", 6.0, "silence"),
}
# name -> reason the pool must report
BAD = {
    "bad/empty.wav": "empty_file",
    "bad/text.wav": "unsupported_format",
    "bad/random.flac": "unsupported_format",
    "bad/truncated.wav": "truncated",
    "bad/truncated.flac": "corrupt_audio",
    "bad/header_only.wav": "no_audio_frames",
}


def signal(sr: int, seconds: float, kind: str, channels: int, seed: int) -> np.ndarray:
    n = round(sr * seconds)
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    if kind == "tone":
        x = 0.3 * np.sin(2 * np.pi * (300 + 50 * seed) * t)
    elif kind == "noise":
        x = 0.1 * rng.standard_normal(n)
    elif kind == "silence":
        x = np.zeros(n)
    else:  # silence_then_tone: segments 0 and 1 silent, segment 2 (10-12 s) a tone
        x = np.where(t >= 10.0, 0.3 * np.sin(2 * np.pi * 500 * t), 0.0)
    data = np.stack([x * (1 - 0.1 * c) for c in range(channels)], axis=1) if channels > 1 else x
    return np.clip(data, -1, 1).astype(np.float32)


def encoded(data: np.ndarray, sr: int, fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def make_corpus(root: Path) -> Path:
    root = Path(root)
    for i, (rel, (sr, ch, fmt, sub, sec, kind)) in enumerate(sorted(GOOD.items())):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(encoded(signal(sr, sec, kind, ch, i), sr, fmt, sub))
    (root / "bad").mkdir(parents=True, exist_ok=True)
    tone = signal(44_100, 6.0, "tone", 1, 0)
    wav, flac = encoded(tone, 44_100, "WAV", "PCM_16"), encoded(tone, 44_100, "FLAC", "PCM_16")
    (root / "bad/empty.wav").write_bytes(b"")
    (root / "bad/text.wav").write_text("this is not audio, just a renamed text file\n" * 10)
    (root / "bad/random.flac").write_bytes(np.random.default_rng(1).bytes(4096))
    (root / "bad/truncated.wav").write_bytes(wav[: len(wav) // 2])
    (root / "bad/truncated.flac").write_bytes(flac[: len(flac) // 2])
    (root / "bad/header_only.wav").write_bytes(encoded(np.zeros((0, 1), np.float32), 16_000, "WAV", "PCM_16"))
    (root / "notes.txt").write_text("not an audio extension: ignored\n")
    (root / ".hidden").mkdir(exist_ok=True)
    (root / ".hidden/skip.wav").write_bytes(wav)
    return root
