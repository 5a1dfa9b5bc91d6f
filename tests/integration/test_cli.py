"""``callfleet call`` and ``callfleet demo`` as an operator runs them."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from callfleet.media.tones import sine
from callfleet.media.wav import read_wav, write_wav
from callfleet.sip.testing import PhoneScript
from tests.conftest import PhoneFactory
from tests.integration.audio import assert_tone, tone_of_wav

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def run_cli(*args: str, timeout_s: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callfleet.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_call_plays_records_and_sends_dtmf(phones: PhoneFactory, tmp_path: Path) -> None:
    phone = await phones(PhoneScript(tone_hz=800, record_dir=str(tmp_path), dtmf="7"))
    greeting = tmp_path / "greeting.wav"
    write_wav(greeting, sine(400, 1000, 16000), 16000)
    record = tmp_path / "call.wav"
    code, out, err = await run_cli(
        "call",
        phone.uri(),
        "--play",
        str(greeting),
        "--record",
        str(record),
        "--dtmf",
        "1#",
        "--duration",
        "2",
        "--header",
        "X-Check=trunk-test",
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["answered"] and report["end_reason"] == "completed"
    assert report["dtmf_sent"] == "1#" and report["dtmf_received"] == "7"
    assert report["rtp"]["rx_packets"] > 20 and report["codec"] == "PCMU"
    assert record.exists()
    assert [e["digit"] for e in phone.find("dtmf")] == ["1", "#"]
    assert (await phone.wait_for("incoming"))["headers"]["x-check"] == "trunk-test"
    assert_tone(tone_of_wav((await phone.wait_for("recorded"))["path"]), 400)


async def test_wideband_g722_call_through_a_trunk(phones: PhoneFactory, tmp_path: Path) -> None:
    import wave

    import numpy as np

    from callfleet.media.analysis import dominant_frequency_hz

    # Both ends prefer G.722, so both bridges run at 16 kHz: a 5 kHz tone, impossible
    # on a narrowband (8 kHz) path, must arrive intact.
    phone = await phones(PhoneScript(tone_hz=5000), codecs="G722,PCMU")
    record = tmp_path / "wide.wav"
    trunk = f"sip:127.0.0.1:{phone.ports['udp']};codecs=G722"
    code, out, err = await run_cli(
        "call",
        "+15550199",
        "--trunk",
        trunk,
        "--record",
        str(record),
        "--duration",
        "1.5",
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["codec"] == "G722" and report["rtp"]["sample_rate"] == 16000
    with wave.open(str(record), "rb") as w:
        assert w.getframerate() == 16000
        far = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2)[:, 0]
    assert abs(dominant_frequency_hz(far[8000:], 16000, max_hz=7500) - 5000) < 10


async def test_call_busy_exits_1(phones: PhoneFactory) -> None:
    phone = await phones(PhoneScript(answer="reject", reject_code=486))
    code, out, _ = await run_cli("call", phone.uri())
    assert code == 1
    assert "ended busy (486 Busy Here)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["call", "12ab"], "callfleet call: invalid phone number or SIP URI: '12ab'"),
        (["call", "+15550100"], "callfleet call: cannot dial number '+15550100' without a trunk"),
        (
            ["call", "100", "--trunk", "sip:u:p@pbx;colour=red"],
            "callfleet call: trunk parameter 'colour=red' is not one of",
        ),
        (["call", "sip:a@127.0.0.1", "--header", "oops"], "--header must be NAME=VALUE"),
    ],
)
async def test_bad_input_exits_2_with_message(args: list[str], message: str) -> None:
    code, _, err = await run_cli(*args)
    assert code == 2
    assert message in err


async def test_bad_wav_is_refused_before_dialling(phones: PhoneFactory, tmp_path: Path) -> None:
    phone = await phones()
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    code, _, err = await run_cli("call", phone.uri(), "--play", str(bad))
    assert code == 2 and "bad.wav" in err
    assert phone.find("incoming") == []


@pytest.mark.timeout(300)
async def test_demo_runs_and_passes() -> None:
    code, out, err = await run_cli("demo", timeout_s=280)
    assert code == 0, out + err
    assert "demo passed" in out and "webhooks received and verified: 7" in out
    assert "user : Yes, I can make it." in out  # the voice agent heard the callee
    assert "agent: Great, we will see you on Tuesday at 3 pm. Goodbye!" in out


async def test_dtmf_command_finds_in_band_digits_in_files(tmp_path: Path) -> None:
    from callfleet.media.tones import dtmf_sequence

    menu = tmp_path / "menu.wav"
    write_wav(menu, dtmf_sequence("12#", 16000, tone_ms=80, gap_ms=120), 16000)
    quiet = tmp_path / "quiet.wav"
    write_wav(quiet, sine(440, 500, 8000), 8000)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEjunk")
    code, out, err = await run_cli("dtmf", str(menu), str(broken), str(quiet), "--json")
    assert code == 2  # one file was unreadable; the others were still analysed
    assert f"{broken}: " in err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(r["file"], r["digits"]) for r in lines] == [(str(menu), "12#"), (str(quiet), "")]
    starts = [e["start_ms"] for e in lines[0]["events"]]
    assert [abs(s - t) <= 15 for s, t in zip(starts, (0, 200, 400), strict=True)] == [True] * 3
    assert all(70 <= e["end_ms"] - e["start_ms"] <= 90 for e in lines[0]["events"])


async def test_amd_command_labels_files_in_order(tmp_path: Path) -> None:
    from callfleet.media.tones import beep

    machine = tmp_path / "machine.wav"
    # No speech, then a long steady 1 kHz beep: a machine, with the beep found at 2 s.
    silence = np.zeros(16000, np.int16)
    write_wav(machine, np.concatenate([silence, beep(1000, 500, 8000)]), 8000)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not a wav")
    code, out, err = await run_cli("amd", str(machine), str(broken), "--json", timeout_s=120)
    assert code == 2 and f"{broken}" in err
    (line,) = [json.loads(x) for x in out.splitlines()]
    assert line["file"] == str(machine) and line["label"] == "voicemail"
    assert abs(line["beep_ms"] - 2000) <= 100
    assert line["decision_ms"] >= line["beep_ms"]


async def test_amd_corpus_command_writes_labelled_files_the_amd_command_reads(
    tmp_path: Path,
) -> None:
    out_dir = tmp_path / "corpus"
    code, out, err = await run_cli(
        "amd-corpus", str(out_dir), "--per-class", "1", "--seed", "7", "--templates", "heldout",
        timeout_s=120,
    )  # fmt: skip
    assert code == 0, err
    labels = [json.loads(x) for x in (out_dir / "labels.jsonl").read_text().splitlines()]
    assert out.strip() == str(out_dir / "labels.jsonl")
    assert [t["label"] for t in labels] == ["human", "voicemail", "ivr"]
    for t in labels:
        samples, rate = read_wav(out_dir / t["file"])
        assert rate == 8000 and len(samples) / rate > 1.0
        assert t["kind"] and t["snr_db"] >= 15 and t["codec"] in ("pcmu", "pcma")
    files = [str(out_dir / t["file"]) for t in labels]
    code, out, err = await run_cli("amd", *files, "--json", timeout_s=180)
    assert code == 0, err
    assert [json.loads(x)["file"] for x in out.splitlines()] == files


async def test_amd_corpus_command_rejects_bad_arguments(tmp_path: Path) -> None:
    code, _, err = await run_cli("amd-corpus", str(tmp_path), "--per-class", "0")
    assert code == 2 and "--per-class must be at least 1, got 0" in err
    code, _, err = await run_cli("amd-corpus", str(tmp_path), "--templates", "mine")
    assert code == 2 and "invalid choice: 'mine'" in err
