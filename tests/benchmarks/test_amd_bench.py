"""Answering-machine detection on a labelled corpus: prints the confusion matrix,
human-vs-machine accuracy, humans called machine, 3-way accuracy, decision times per class
and per sub-case, and the beep start error.

By default the corpus is generated (``callfleet.agents.amd.corpus``) with a held-out seed
and the held-out template set (tuning used seeds 1-9 and the development templates only).
``AMD_BENCH_CORPUS=DIR`` evaluates a directory holding ``labels.jsonl`` instead (one line
per WAV: ``file``, ``label`` and optionally ``kind`` and ``beep_ms``), e.g. real recordings.

Run: ``.venv/bin/pytest -m benchmark tests/benchmarks/test_amd_bench.py -s``
(``AMD_BENCH_N`` files per class, default 40; ``AMD_BENCH_SEED``, default 1001;
``AMD_BENCH_TEMPLATES``: ``heldout`` (default), ``dev`` or ``all``).
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from callfleet.agents.amd.cli import analyze_file, load_models
from callfleet.agents.amd.corpus import CLASSES, agenerate

pytestmark = [
    pytest.mark.benchmark,
    pytest.mark.timeout(7200),
]

LABELS = (*CLASSES, "unknown")
Row = tuple[dict[str, Any], dict[str, Any]]


async def evaluate(corpus: Path, **options: Any) -> list[Row]:
    """(truth, detector output) for every file of ``corpus/labels.jsonl``; ``options``
    go to the detector."""
    truth = [json.loads(line) for line in (corpus / "labels.jsonl").read_text().splitlines()]
    vad, stt = load_models()
    return [(t, await analyze_file(str(corpus / t["file"]), vad, stt, **options)) for t in truth]


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return (
        f"median {statistics.median(values):6.0f} p90 {np.percentile(values, 90):6.0f} "
        f"(n {len(values)})"
    )


def report(rows: list[Row], title: str) -> None:
    """Prints the figures the issue's targets are stated in, then the misses."""
    confusion = {a: dict.fromkeys(LABELS, 0) for a in CLASSES}
    for t, out in rows:
        confusion[t["label"]][out["label"]] += 1
    print(f"\nAMD on {len(rows)} files: {title}")
    print("truth \\ said  " + "".join(f"{x:>10}" for x in LABELS))
    for a in CLASSES:
        print(f"{a:<13} " + "".join(f"{confusion[a][x]:>10}" for x in LABELS))
    humans = [(t, o) for t, o in rows if t["label"] == "human"]
    hvm = np.mean([(t["label"] == "human") == (o["label"] == "human") for t, o in rows])
    h2m = np.mean([o["label"] in ("voicemail", "ivr") for _, o in humans])
    acc = np.mean([t["label"] == o["label"] for t, o in rows])
    print(f"human vs machine accuracy {hvm:.1%} (target >= 97%)")
    print(f"humans called machine     {h2m:.1%} (target <= 2%)")
    print(f"3-way accuracy            {acc:.1%} (target >= 90%)")
    # Decision time: when the final label was first said (``label_ms``).
    for a in CLASSES:
        times = [o["label_ms"] for t, o in rows if t["label"] == a and o["label_ms"] is not None]
        print(f"decision ms {a:<10} {_spread(times)}")
    kinds = sorted({(t["label"], t.get("kind", "")) for t, _ in rows})
    for label, kind in kinds:
        mine = [(t, o) for t, o in rows if t["label"] == label and t.get("kind", "") == kind]
        right = sum(t["label"] == o["label"] for t, o in mine)
        times = [o["label_ms"] for _, o in mine if o["label_ms"] is not None]
        print(f"  {label}/{kind:<18} {right:>3}/{len(mine):<3} decision ms {_spread(times)}")
    errors = [
        abs(o["beep_ms"] - t["beep_ms"])
        for t, o in rows
        if t.get("beep_ms") is not None and o["beep_ms"] is not None
    ]
    with_beep = sum(t.get("beep_ms") is not None for t, _ in rows)
    false_beeps = sum(t.get("beep_ms") is None and o["beep_ms"] is not None for t, o in rows)
    if errors:
        print(
            f"beeps found {len(errors)}/{with_beep}, false {false_beeps}; start error ms "
            f"median {statistics.median(errors):.1f} max {max(errors):.1f} "
            f"(within 100 ms: {np.mean(np.array(errors) <= 100):.0%})"
        )
    stt_ms = [o["stt_ms"] for _, o in rows]
    print(f"STT+classifier time per file ms: median {statistics.median(stt_ms):.0f}")
    for t, o in rows:
        if t["label"] != o["label"]:
            print(f"  miss {t['file']} {t.get('kind')} {t.get('voice')} -> {o['label']} "
                  f"({o['reason']}): {o['transcript'][:70]!r}")  # fmt: skip


async def test_amd_corpus(tmp_path: Path) -> None:
    given = os.environ.get("AMD_BENCH_CORPUS")
    if given:
        rows = await evaluate(Path(given))
        report(rows, given)
        return
    n = int(os.environ.get("AMD_BENCH_N", "40"))
    seed = int(os.environ.get("AMD_BENCH_SEED", "1001"))
    templates = os.environ.get("AMD_BENCH_TEMPLATES", "heldout")
    await agenerate(tmp_path, n, seed, templates=templates)
    rows = await evaluate(tmp_path)
    report(rows, f"generated, {n} per class, seed {seed}, {templates} templates")
