"""Compressed fixtures encoded by the tests themselves with PyAV (no Debian ffmpeg needed):
AAC in .m4a, Opus in .webm and .opus, MP3, AAC in .mkv and .mp4, each from a known signal."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np

# extension -> (container format, codec, sample rate)
FORMATS = {
    ".m4a": ("ipod", "aac", 44_100),
    ".webm": ("webm", "libopus", 48_000),
    ".opus": ("ogg", "libopus", 48_000),
    ".mp3": ("mp3", "libmp3lame", 44_100),
    ".mkv": ("matroska", "aac", 32_000),
    ".mp4": ("mp4", "aac", 22_050),
}


def tone_noise(sr: int, seconds: float, channels: int = 2, seed: int = 0) -> np.ndarray:
    """(channels, frames) float32: a tone under varying noise, so every 5-s window has its own loudness."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(sr * seconds)) / sr
    x = 0.25 * np.sin(2 * np.pi * 440 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.13 * t))
    x += 0.03 * rng.standard_normal(t.size)
    return np.stack([x * (1 - 0.2 * c) for c in range(channels)]).astype(np.float32)


def encode(ext: str, seconds: float, channels: int = 2, seed: int = 0) -> bytes:
    """The bytes of a file of `seconds` in the format of `ext` (see FORMATS)."""
    fmt, codec, sr = FORMATS[ext]
    layout = "stereo" if channels == 2 else "mono"
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=sr, layout=layout)
        planar = stream.codec_context.codec.audio_formats[0].is_planar
        data = tone_noise(sr, seconds, channels, seed)
        step = 4096
        for start in range(0, data.shape[1], step):
            part = data[:, start : start + step]
            array = part if planar else np.ascontiguousarray(part.T).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(array, format="fltp" if planar else "flt", layout=layout)
            frame.sample_rate = sr
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def write(path: Path, seconds: float, channels: int = 2, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(path.suffix, seconds, channels, seed))
    return path
