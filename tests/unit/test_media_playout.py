"""PlayoutBuffer: exact frames, tail padding, clear, underruns, a producer thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from callfleet.media.playout import PlayoutBuffer


def ramp(n: int, start: int = 1) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.int16)


def test_pulls_exact_frames_in_order() -> None:
    buf = PlayoutBuffer(8000, 160)
    audio = ramp(480)
    buf.push(audio)
    assert buf.queued_samples == 480
    assert buf.queued_s == pytest.approx(0.06)
    for i in range(3):
        frame = buf.pull()
        assert frame is not None
        np.testing.assert_array_equal(frame, audio[160 * i : 160 * (i + 1)])
    assert buf.pull() is None
    assert buf.frames_played == 3


def test_frames_span_pushed_chunks() -> None:
    buf = PlayoutBuffer(8000, 160)
    for start in (1, 101, 201):
        buf.push(ramp(100, start))
    first, second = buf.pull(), buf.pull()
    assert first is not None and second is not None
    np.testing.assert_array_equal(first, ramp(160))
    np.testing.assert_array_equal(second[:140], ramp(140, 161))
    assert not second[140:].any()


def test_short_tail_is_padded_with_silence() -> None:
    buf = PlayoutBuffer(16000, 320)
    buf.push(ramp(400))
    buf.finish()
    buf.pull()
    tail = buf.pull()
    assert tail is not None
    assert tail.dtype == np.int16
    assert len(tail) == 320
    np.testing.assert_array_equal(tail[:80], ramp(80, 321))
    assert not tail[80:].any()
    assert buf.queued_samples == 0
    assert buf.underruns == 0


def test_empty_buffer_gives_none_without_underruns() -> None:
    buf = PlayoutBuffer(8000, 160)
    assert buf.pull() is None
    assert buf.pull() is None
    assert buf.underruns == 0
    assert buf.frames_played == 0
    buf.push(np.zeros(0, np.int16))  # an empty push starts nothing
    assert buf.pull() is None
    assert buf.underruns == 0


def test_clear_drops_everything_within_one_pull() -> None:
    buf = PlayoutBuffer(8000, 160)
    buf.push(ramp(80000 - 1))  # 10 s
    assert buf.pull() is not None
    generation = buf.generation
    assert buf.clear() == 80000 - 1 - 160
    assert buf.generation == generation + 1
    assert buf.queued_samples == 0
    assert buf.pull() is None
    assert buf.underruns == 0  # clearing ends the stream: no underrun afterwards
    assert buf.clear() == 0


def test_underruns_count_only_between_push_and_finish() -> None:
    buf = PlayoutBuffer(8000, 160)
    buf.push(ramp(320))
    buf.pull()
    buf.pull()
    assert buf.underruns == 0
    assert buf.pull() is None  # producer is mid-stream and late: a gap
    assert buf.underruns == 1
    buf.push(ramp(80))
    assert buf.pull() is not None  # a partial frame mid-stream is a gap too
    assert buf.underruns == 2
    buf.finish()
    assert buf.pull() is None
    assert buf.pull() is None
    assert buf.underruns == 2


def test_push_rejects_non_int16() -> None:
    buf = PlayoutBuffer(8000, 160)
    with pytest.raises(ValueError, match=r"^playout expects int16 samples, got float32$"):
        buf.push(np.zeros(160, np.float32))


def test_push_beyond_the_limit_overflows_and_keeps_what_was_queued() -> None:
    buf = PlayoutBuffer(8000, 160, max_s=0.1)
    buf.push(ramp(800))
    with pytest.raises(OverflowError, match=r"^playout buffer full: 0\.1 s queued$"):
        buf.push(ramp(1))
    assert buf.queued_samples == 800


def test_producer_thread_against_the_clock() -> None:
    buf = PlayoutBuffer(8000, 160)
    rng = np.random.default_rng(9)
    sizes = rng.integers(1, 400, 2000)
    # No zeros in the audio, so padding (zeros) can be told apart from what was pushed.
    audio = (np.arange(int(sizes.sum())) % 30000 + 1).astype(np.int16)
    done = threading.Event()

    def produce() -> None:
        pos = 0
        for size in sizes:
            buf.push(audio[pos : pos + size])
            pos += int(size)
        buf.finish()
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    pulled = []
    while not (done.is_set() and buf.queued_samples == 0):
        frame = buf.pull()
        if frame is not None:
            assert len(frame) == 160
            pulled.append(frame)
    producer.join(timeout=10)
    played = np.concatenate(pulled)
    np.testing.assert_array_equal(played[played != 0], audio)
    assert buf.frames_played == len(pulled)


def test_pause_holds_audio_and_resume_plays_it() -> None:
    buf = PlayoutBuffer(8000, 160)
    buf.push(np.arange(320, dtype=np.int16))
    buf.pause()
    assert buf.pull() is None and buf.pull() is None
    assert buf.underruns == 0 and buf.queued_samples == 320
    buf.resume()
    first = buf.pull()
    assert first is not None and int(first[0]) == 0
    buf.pause()
    assert buf.clear() == 160
    assert not buf.paused  # a clear ends the pause: the next utterance plays


def test_started_at_marks_the_first_played_frame_of_each_burst() -> None:
    buf = PlayoutBuffer(8000, 160)
    assert buf.started_at is None and buf.starts == 0
    buf.push(np.ones(200, np.int16))
    assert buf.starts == 0  # pushed, not yet on the wire
    buf.pull()
    first = buf.started_at
    assert buf.starts == 1 and first is not None
    buf.push(np.ones(100, np.int16))  # queued behind audio still playing: same burst
    buf.pull()
    buf.pull()
    assert buf.starts == 1
    buf.push(np.ones(160, np.int16))  # after running dry: a new burst
    buf.pull()
    assert buf.starts == 2 and buf.started_at is not None and buf.started_at >= first
