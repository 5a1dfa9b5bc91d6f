"""WAV reading and writing: round trips, G.711 and wide PCM files, malformed files."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from callfleet.media.analysis import dominant_frequency_hz
from callfleet.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from callfleet.media.tones import sine, white_noise
from callfleet.media.wav import WavWriter, read_wav, write_wav

# --- building RIFF files by hand ----------------------------------------------------------


def chunk(cid: bytes, body: bytes, size: int | None = None) -> bytes:
    declared = len(body) if size is None else size
    return cid + struct.pack("<I", declared) + body + b"\0" * (len(body) & 1)


def fmt_chunk(tag: int, channels: int, rate: int, bits: int, extra: bytes | None = None) -> bytes:
    block_align = channels * ((bits + 7) // 8)
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * block_align, block_align, bits)
    if extra is not None:
        body += struct.pack("<H", len(extra)) + extra
    return chunk(b"fmt ", body)


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_mono_round_trip_is_exact(tmp_path: Path, rate: int) -> None:
    samples = white_noise(300, rate, level_dbfs=-6.0, seed=rate)
    path = tmp_path / "mono.wav"
    write_wav(path, samples, rate)
    back, back_rate = read_wav(path)
    assert back_rate == rate
    assert back.dtype == np.int16
    np.testing.assert_array_equal(back, samples)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, rate)


def test_stereo_is_written_interleaved_and_read_back_averaged(tmp_path: Path) -> None:
    left = np.array([100, -200, 32767, -32768, 3], np.int16)
    right = np.array([300, 200, 32767, -32768, 4], np.int16)
    path = tmp_path / "stereo.wav"
    write_wav(path, np.stack([left, right], axis=1), 8000)
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 2
        raw = np.frombuffer(w.readframes(5), "<i2")
    np.testing.assert_array_equal(raw, [100, 300, -200, 200, 32767, 32767, -32768, -32768, 3, 4])
    back, _ = read_wav(path)
    np.testing.assert_array_equal(back, [200, 0, 32767, -32768, 4])  # 3.5 rounds to even


def test_read_with_resampling(tmp_path: Path) -> None:
    path = tmp_path / "tone16k.wav"
    write_wav(path, sine(1000, 1000, 16000), 16000)
    samples, rate = read_wav(path, sample_rate=8000)
    assert rate == 8000
    assert len(samples) == 8000
    assert dominant_frequency_hz(samples, 8000) == pytest.approx(1000.0, abs=1.0)
    same, same_rate = read_wav(path, sample_rate=16000)
    assert same_rate == 16000
    assert len(same) == 16000


@pytest.mark.parametrize(
    ("tag", "encode", "decode"), [(7, ulaw_encode, ulaw_decode), (6, alaw_encode, alaw_decode)]
)
def test_g711_wav(tmp_path: Path, tag: int, encode: object, decode: object) -> None:
    tone = sine(440, 200, 8000)
    codes = encode(tone).tobytes()  # type: ignore[operator]
    # As SoX writes them: an 18-byte fmt chunk (cbSize 0) and a fact chunk.
    data = riff(
        fmt_chunk(tag, 1, 8000, 8, extra=b""),
        chunk(b"fact", struct.pack("<I", len(codes))),
        chunk(b"data", codes),
    )
    samples, rate = read_wav(write_bytes(tmp_path / "g711.wav", data))
    assert rate == 8000
    np.testing.assert_array_equal(samples, decode(codes))  # type: ignore[operator]


def test_8_bit_unsigned_pcm(tmp_path: Path) -> None:
    path = tmp_path / "u8.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(bytes([0, 1, 127, 128, 129, 255]))
    samples, _ = read_wav(path)
    np.testing.assert_array_equal(samples, [-32768, -32512, -256, 0, 256, 32512])


@pytest.mark.parametrize("width", [3, 4])
def test_wide_pcm_keeps_the_top_16_bits(tmp_path: Path, width: int) -> None:
    expected = np.array([0, 1, -1, 32767, -32768, 1234], np.int16)
    low = np.array([0, 0x7F, 0xFF, 0xFF, 0, 0x80])  # fraction bits below the int16 part
    wide = (expected.astype(np.int64) << (8 * (width - 2))) | (low << (8 * (width - 3)))
    raw = b"".join(int(v).to_bytes(width, "little", signed=True) for v in wide)
    path = tmp_path / f"pcm{8 * width}.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(8000)
        w.writeframes(raw)
    samples, _ = read_wav(path)
    np.testing.assert_array_equal(samples, expected)


def test_extensible_pcm_and_unknown_chunks(tmp_path: Path) -> None:
    samples = np.array([5, -5, 1000, -1000], np.int16)
    subformat = struct.pack("<H", 1) + bytes.fromhex("000000001000800000aa00389b71")
    extra = struct.pack("<HI", 16, 4) + subformat  # valid bits, channel mask, SubFormat
    data = riff(
        chunk(b"LIST", b"odd"),  # odd size: padded to an even boundary
        fmt_chunk(0xFFFE, 1, 16000, 16, extra=extra),
        chunk(b"data", samples.astype("<i2").tobytes()),
        chunk(b"junk", b"trailing"),
    )
    back, rate = read_wav(write_bytes(tmp_path / "ext.wav", data))
    assert rate == 16000
    np.testing.assert_array_equal(back, samples)


def test_streaming_data_size_reads_to_the_end(tmp_path: Path) -> None:
    samples = np.arange(10, dtype=np.int16)
    data = riff(fmt_chunk(1, 1, 8000, 16), b"data\xff\xff\xff\xff" + samples.tobytes())
    back, _ = read_wav(write_bytes(tmp_path / "stream.wav", data))
    np.testing.assert_array_equal(back, samples)


def test_partial_trailing_frame_is_dropped(tmp_path: Path) -> None:
    data = riff(fmt_chunk(1, 2, 8000, 16), chunk(b"data", struct.pack("<hhh", 10, 20, 30)))
    back, _ = read_wav(write_bytes(tmp_path / "partial.wav", data))
    np.testing.assert_array_equal(back, [15])


# --- malformed files ----------------------------------------------------------------------


def valid_wav(samples: int = 100) -> bytes:
    return riff(fmt_chunk(1, 1, 8000, 16), chunk(b"data", b"\x01\x00" * samples))


def expect_error(path: Path, data: bytes, message: str) -> None:
    path.write_bytes(data)
    with pytest.raises(ValueError) as info:
        read_wav(path)
    assert str(info.value) == message.format(path=path)


def test_random_bytes(tmp_path: Path) -> None:
    noise = np.random.default_rng(1).integers(0, 256, 1000, dtype=np.uint8).tobytes()
    expect_error(tmp_path / "x.wav", noise, "{path} is not a RIFF/WAVE file")


def test_empty_file(tmp_path: Path) -> None:
    expect_error(tmp_path / "x.wav", b"", "{path} is not a RIFF/WAVE file")


def test_riff_that_is_not_wave(tmp_path: Path) -> None:
    data = b"RIFF" + struct.pack("<I", 4) + b"AVI "
    expect_error(tmp_path / "x.avi", data, "{path} is not a RIFF/WAVE file")


def test_cut_inside_the_riff_header(tmp_path: Path) -> None:
    expect_error(
        tmp_path / "x.wav",
        valid_wav()[:8],
        "{path} is truncated: 8 bytes is too short for a RIFF header",
    )


def test_cut_inside_the_fmt_chunk(tmp_path: Path) -> None:
    expect_error(
        tmp_path / "x.wav",
        valid_wav()[:30],
        "{path} is truncated: its 'fmt' chunk declares 16 bytes but only 10 follow",
    )


def test_cut_inside_the_data_chunk(tmp_path: Path) -> None:
    expect_error(
        tmp_path / "x.wav",
        valid_wav(100)[:-50],
        "{path} is truncated: its 'data' chunk declares 200 bytes but only 150 follow",
    )


def test_missing_data_chunk(tmp_path: Path) -> None:
    expect_error(tmp_path / "x.wav", riff(fmt_chunk(1, 1, 8000, 16)), "{path} has no data chunk")


def test_missing_fmt_chunk(tmp_path: Path) -> None:
    expect_error(tmp_path / "x.wav", riff(chunk(b"data", b"\0\0")), "{path} has no fmt chunk")


def test_short_fmt_chunk(tmp_path: Path) -> None:
    data = riff(chunk(b"fmt ", b"\x01\x00\x01\x00"), chunk(b"data", b"\0\0"))
    expect_error(tmp_path / "x.wav", data, "{path} has a 4-byte fmt chunk, shorter than 16 bytes")


def test_float_format(tmp_path: Path) -> None:
    data = riff(fmt_chunk(3, 1, 8000, 32), chunk(b"data", b"\0" * 16))
    expect_error(tmp_path / "x.wav", data, "{path} uses unsupported format tag 3 (IEEE float)")


def test_unknown_format_tag(tmp_path: Path) -> None:
    data = riff(fmt_chunk(0x1234, 1, 8000, 16), chunk(b"data", b"\0" * 16))
    expect_error(tmp_path / "x.wav", data, "{path} uses unsupported format tag 4660 (unknown)")


def test_unsupported_pcm_width(tmp_path: Path) -> None:
    data = riff(fmt_chunk(1, 1, 8000, 64), chunk(b"data", b"\0" * 16))
    expect_error(tmp_path / "x.wav", data, "{path} uses unsupported PCM sample width of 64 bits")


def test_sixteen_bit_g711_is_refused(tmp_path: Path) -> None:
    data = riff(fmt_chunk(7, 1, 8000, 16), chunk(b"data", b"\0" * 16))
    expect_error(tmp_path / "x.wav", data, "{path} declares 16-bit G.711 samples; G.711 is 8-bit")


def test_zero_channels_and_zero_rate(tmp_path: Path) -> None:
    data = riff(fmt_chunk(1, 0, 8000, 16), chunk(b"data", b"\0" * 16))
    expect_error(tmp_path / "a.wav", data, "{path} declares 0 channels")
    data = riff(fmt_chunk(1, 1, 0, 16), chunk(b"data", b"\0" * 16))
    expect_error(tmp_path / "b.wav", data, "{path} declares a sample rate of 0 Hz")


def test_missing_file_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_wav(tmp_path / "absent.wav")


# --- WavWriter ----------------------------------------------------------------------------


def test_recording_is_valid_while_it_grows(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    chunks = [white_noise(20, 8000, level_dbfs=-20.0, seed=i) for i in range(5)]
    with WavWriter(path, 8000) as writer:
        empty, _ = read_wav(path)
        assert len(empty) == 0
        for i, frame in enumerate(chunks, start=1):
            writer.write(frame)
            so_far, rate = read_wav(path)
            assert rate == 8000
            np.testing.assert_array_equal(so_far, np.concatenate(chunks[:i]))
        assert writer.frames_written == 800
        assert writer.duration_s == pytest.approx(0.1)
    assert writer.closed
    final, _ = read_wav(path)
    np.testing.assert_array_equal(final, np.concatenate(chunks))


def test_stereo_recording(tmp_path: Path) -> None:
    path = tmp_path / "both.wav"
    frame = np.stack([np.full(160, 1000, np.int16), np.full(160, -1000, np.int16)], axis=1)
    writer = WavWriter.open(path, 16000, channels=2)
    writer.write(frame)
    writer.write(frame)
    writer.close()
    writer.close()  # idempotent
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 16000, 320)


def test_write_after_close(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    writer = WavWriter(path, 8000)
    writer.close()
    with pytest.raises(ValueError) as info:
        writer.write(np.zeros(10, np.int16))
    assert str(info.value) == f"WavWriter for {path} is closed"


def test_channel_mismatch(tmp_path: Path) -> None:
    with WavWriter(tmp_path / "x.wav", 8000, channels=2) as writer:
        with pytest.raises(
            ValueError, match=r"^WavWriter for 2 channel\(s\) got samples with shape \(10,\)$"
        ):
            writer.write(np.zeros(10, np.int16))


def test_write_wav_rejects_float(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError,
        match=r"^WAV samples must be int16 with shape \(n,\) or \(n, channels\), "
        r"got float64 with shape \(4,\)$",
    ):
        write_wav(tmp_path / "x.wav", np.zeros(4), 8000)  # type: ignore[arg-type]


def test_writer_rejects_bad_rate_and_channels(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^WAV sample_rate must be positive, got 0$"):
        WavWriter(tmp_path / "x.wav", 0)
    with pytest.raises(ValueError, match=r"^WAV channels must be positive, got 0$"):
        WavWriter(tmp_path / "x.wav", 8000, channels=0)
