"""Text on its way to the TTS: markdown and emoji stripped, and a streamed reply cut
into sentences so the first one can be spoken while the LLM is still writing.

LLMs write markdown (``**bold**``, lists, links) and emoji that a TTS would read out
loud or stumble on; ``tts_text_transforms`` (session option) names the transforms to
apply, by default both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

_MARKDOWN_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"```.*?```", re.S), " "),  # code blocks are not speakable
    (re.compile(r"`([^`]*)`"), r"\1"),
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images: keep the alt text
    (re.compile(r"\[([^\]]*)\]\([^)]*\)"), r"\1"),  # links: keep the text
    (re.compile(r"(\*\*|__)(.+?)\1"), r"\2"),
    (re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<!\w)_(?!\s)(.+?)(?<!\s)_(?!\w)"), r"\1"),
    (re.compile(r"~~(.+?)~~"), r"\1"),
    (re.compile(r"^\s{0,3}#{1,6}\s+", re.M), ""),  # headings
    (re.compile(r"^\s{0,3}>\s?", re.M), ""),  # block quotes
    (re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+", re.M), ""),  # list markers
    (re.compile(r"^\s*(?:-{3,}|\*{3,}|_{3,})\s*$", re.M), ""),  # rules
]

_EMOJI = re.compile(
    "["
    "\U0001f000-\U0001faff"  # pictographs, emoticons, transport, symbols & pictographs ext.
    "\u2600-\u27bf"  # misc symbols, dingbats
    "\u2b00-\u2bff"  # arrows, stars
    "\ufe0f\u200d"  # variation selector, zero-width joiner
    "\U000e0020-\U000e007f"  # tag characters (flags)
    "]+"
)


def strip_markdown(text: str) -> str:
    for pattern, replacement in _MARKDOWN_RULES:
        text = pattern.sub(replacement, text)
    return text


def strip_emoji(text: str) -> str:
    return _EMOJI.sub("", text)


TextTransform = Callable[[str], str]

TRANSFORMS: dict[str, TextTransform] = {
    "filter_markdown": strip_markdown,
    "filter_emoji": strip_emoji,
}
DEFAULT_TTS_TEXT_TRANSFORMS = ("filter_markdown", "filter_emoji")


def resolve_transforms(items: Iterable[str | TextTransform]) -> list[TextTransform]:
    out: list[TextTransform] = []
    for item in items:
        if callable(item):
            out.append(item)
        elif item in TRANSFORMS:
            out.append(TRANSFORMS[item])
        else:
            raise ValueError(
                f"unknown tts_text_transform {item!r}; known: {', '.join(sorted(TRANSFORMS))}"
            )
    return out


# A sentence ends at . ! ? (or …) followed by space, unless the word before the dot is a
# common abbreviation or a single letter ("Dr.", "e.g.", "U.S.").
_END = re.compile(r"[.!?…]+[\"')\]]*\s+")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e a.m p.m no approx apt dept est inc ltd".split()
)


class SentenceChunker:
    """Cuts streamed text into speakable pieces.

    ``push(delta)`` returns the sentences completed by ``delta``; ``flush()`` returns
    the rest. The first piece may be cut early at a clause boundary (a comma after at
    least ``first_min_chars``) so that the first audio starts sooner; later pieces are
    whole sentences of at least ``min_chars`` (short ones are joined to the next).
    """

    def __init__(self, *, min_chars: int = 20, first_min_chars: int = 40) -> None:
        self.min_chars = min_chars
        self.first_min_chars = first_min_chars
        self._buffer = ""
        self._emitted = 0

    def push(self, delta: str) -> list[str]:
        self._buffer += delta
        out: list[str] = []
        start = 0
        for match in _END.finditer(self._buffer):
            candidate = self._buffer[start : match.end()]
            word = candidate.rstrip().rstrip(".!?…\"')]").rsplit(None, 1)
            last_word = word[-1].lower() if word else ""
            if match.group(0).lstrip().startswith(".") and (
                last_word in _ABBREVIATIONS or len(last_word) == 1
            ):
                continue
            if len(candidate.strip()) < self.min_chars:
                continue
            out.append(candidate.strip())
            start = match.end()
        self._buffer = self._buffer[start:]
        if not out and self._emitted == 0 and len(self._buffer) >= self.first_min_chars:
            cut = max(self._buffer.rfind(", "), self._buffer.rfind("; "))
            if cut >= self.first_min_chars // 2:
                out.append(self._buffer[: cut + 1].strip())
                self._buffer = self._buffer[cut + 2 :]
        self._emitted += len(out)
        return out

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer.strip(), ""
        self._emitted = 0
        return [rest] if rest else []
