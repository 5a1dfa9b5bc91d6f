"""``callfleet`` commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from callfleet.sip.config import DEFAULT_CODECS, EndpointConfig, Transport, TransportSpec, Trunk

if TYPE_CHECKING:
    from callfleet.agents.agent import Agent
    from callfleet.agents.config import AgentDefinition
    from callfleet.agents.session import AgentSession
    from callfleet.sip.endpoint import SipEndpoint
    from callfleet.sip.softphone import CallReport

    AgentToRun = tuple[AgentDefinition, AgentSession[Any], Agent]


def _call_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "call",
        help="place one call and print the outcome (checks a trunk, or tries an --agent)",
        description="Place one call, like a softphone (or with an --agent file on the line), "
        "and print the outcome.",
    )
    p.add_argument("target", help="a SIP URI, or a number to dial through --trunk")
    p.add_argument(
        "--trunk",
        help="sip:USER:PASSWORD@HOST[:PORT][;transport=tcp][;register=yes][;codecs=PCMA,PCMU]"
        "[;caller_id=+1555...][;dtmf=sip_info][;proxy=HOST:PORT]",
    )
    p.add_argument("--caller-id", help="number or SIP URI for the From header")
    p.add_argument("--header", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--play", metavar="FILE.wav", help="play this file after the answer")
    p.add_argument("--record", metavar="OUT.wav", help="record both sides (stereo)")
    p.add_argument("--dtmf", metavar="DIGITS", help="send these digits after the answer")
    p.add_argument(
        "--duration",
        type=float,
        help="seconds on the line (10; with --agent: no limit, until either side ends it)",
    )
    p.add_argument("--ring-timeout", type=float, default=60.0, help="seconds to ring (60)")
    p.add_argument("--bind", default="0.0.0.0", help="local address (0.0.0.0)")
    p.add_argument("--port", type=int, default=0, help="local SIP port (0: any free)")
    p.add_argument("--public-address", help="address to advertise behind NAT")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.add_argument(
        "--agent",
        metavar="FILE.yaml",
        help="run this agent (callfleet.agents.config) once answered",
    )
    p.add_argument(
        "--var", action="append", default=[], metavar="KEY=VALUE", help="agent template variable"
    )


def _pairs(items: list[str], flag: str = "--header", form: str = "NAME=VALUE") -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"{flag} must be {form}, got {item!r}")
        pairs[name] = value
    return pairs


async def _call(args: argparse.Namespace) -> int:
    from callfleet.sip.endpoint import SipEndpoint
    from callfleet.sip.softphone import place_call

    trunk = Trunk.from_uri(args.trunk, name="cli") if args.trunk else None
    headers = _pairs(args.header)
    transport = trunk.transport if trunk else Transport.UDP
    spec = TransportSpec(transport, args.bind, args.port, public_address=args.public_address)
    config = EndpointConfig(
        transports=(spec,),
        trunks=(trunk,) if trunk else (),
        # The trunk's codec order also sets the bridge clock (16 kHz when G.722 leads).
        codecs=trunk.codecs if trunk else DEFAULT_CODECS,
    )
    report = None if args.json else (lambda line: print(line, flush=True))
    if args.var and not args.agent:
        raise ValueError("--var needs --agent")
    # A bad agent file, or a variable it needs, fails here, before anything is dialled.
    agent = await _load_agent(args) if args.agent else None
    async with SipEndpoint(config) as endpoint:
        if trunk and trunk.register:
            reg = await endpoint.wait_registered(trunk.name)
            if report:
                report(f"registration: {reg.code} {reg.reason}")
            if not reg.ok:
                print(f"registration failed: {reg.code} {reg.reason}", file=sys.stderr)
                return 2
        if agent is not None:
            result = await _agent_call(endpoint, args, trunk, headers, agent, report)
            return 0 if result.answered else 1
        result = await place_call(
            endpoint,
            args.target,
            trunk=trunk,
            caller_id=args.caller_id,
            headers=headers,
            play=args.play,
            record=args.record,
            dtmf=args.dtmf,
            duration_s=args.duration if args.duration is not None else 10.0,
            ring_timeout_s=args.ring_timeout,
            report=report,
        )
    if args.json:
        print(json.dumps(result.to_dict()))
    return 0 if result.answered else 1


async def _load_agent(args: argparse.Namespace) -> AgentToRun:
    from callfleet.agents.config import AgentDefinition

    if args.play or args.dtmf:
        raise ValueError("--play and --dtmf cannot be used with --agent (the agent talks)")
    definition = AgentDefinition.load(args.agent)
    session, agent = definition.build(_pairs(args.var, "--var", "KEY=VALUE"))
    await definition.prewarm()  # load the offline models now, not when the callee answers
    return definition, session, agent


async def _agent_call(
    endpoint: SipEndpoint,
    args: argparse.Namespace,
    trunk: Trunk | None,
    headers: dict[str, str],
    to_run: AgentToRun,
    report: Callable[[str], None] | None,
) -> CallReport:
    """``place_call`` with an agent on the line instead of a WAV file: the agent runs
    once the call is answered (``run_agent``) until either side ends it."""
    from callfleet.agents.runner import run_agent
    from callfleet.sip.errors import SipError
    from callfleet.sip.softphone import CallReport
    from callfleet.sip.status import CallState

    definition, session, agent = to_run
    say = report or (lambda line: None)
    started = time.monotonic()
    try:
        call = await endpoint.dial(
            args.target,
            trunk=trunk,
            caller_id=args.caller_id,
            headers=headers,
            ring_timeout_s=args.ring_timeout,
        )
        result = CallReport(call_id=call.id, target=call.remote_uri)
        say(f"{call.id}: dialling {call.remote_uri} with agent {definition.name}")

        def on_state(state: CallState) -> None:
            elapsed = time.monotonic() - started
            if state in (CallState.RINGING, CallState.EARLY_MEDIA) and result.ring_s is None:
                result.ring_s = round(elapsed, 3)
            result.early_media = result.early_media or state is CallState.EARLY_MEDIA
            say(f"{call.id}: {state.value} after {elapsed:.2f} s")
            if state is CallState.ANSWERED and args.record:
                try:
                    call.start_recording(args.record)
                    result.recording = args.record
                except SipError as e:
                    say(f"{call.id}: recording failed: {e}")

        call.on("state", on_state)
        try:
            run = await run_agent(
                session, agent, call, max_duration_s=args.duration, on_line=report
            )
            if not call.is_ended:
                await call.wait_ended(10)
        finally:
            if not call.is_ended:
                await call.hangup()
    finally:
        await definition.aclose()
    result.answered = call.answered_at is not None
    if call.answered_at is not None:
        result.answer_s = round(call.answered_at - started, 3)
    result.end_reason = call.end_reason.value if call.end_reason else None
    result.sip_code, result.sip_reason, result.codec = call.sip_code, call.sip_reason, call.codec
    result.talk_s = round(call.duration_s, 3)
    result.dtmf_received = "".join(e.digit for e in call.dtmf_received)
    result.frames_received = call.audio_in.received
    say(f"{call.id}: ended {result.end_reason} ({result.sip_code} {result.sip_reason})")
    if args.json:
        print(json.dumps({**result.to_dict(), "agent": definition.name, **run.to_dict()}))
    return result


def _scheduler(loglevel: str) -> int:
    import os
    import tempfile

    # Celery beat keeps its schedule state in a file: not in the working directory.
    schedule = os.environ.get(
        "CALLFLEET_BEAT_SCHEDULE", os.path.join(tempfile.gettempdir(), "callfleet-beat")
    )
    from callfleet.workers.supervisor import celery_worker_command

    argv = celery_worker_command(
        "scheduling,webhooks",
        "scheduler@%h",
        "-B",
        "-s",
        schedule,
        concurrency=2,
        loglevel=loglevel,
    )
    os.execv(sys.executable, argv)


def _dtmf(files: list[str], *, as_json: bool) -> int:
    """Digits in each file, in order; a file that cannot be read is reported on stderr
    (and the exit status is 2) without stopping the others."""
    from callfleet.media.dtmf_detect import detect_file

    status = 0
    for path in files:
        try:
            tones = detect_file(path)
        except (OSError, ValueError) as e:
            print(f"callfleet dtmf: {path}: {e}", file=sys.stderr)
            status = 2
            continue
        digits = "".join(t.digit for t in tones)
        if as_json:
            events = [
                {"digit": t.digit, "start_ms": round(t.start_ms), "end_ms": round(t.end_ms)}
                for t in tones
            ]
            print(json.dumps({"file": path, "digits": digits, "events": events}), flush=True)
        else:
            print(f"{path}: {digits or '(none)'}", flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="callfleet", description=__doc__)
    parser.add_argument("--log-level", default="WARNING", help="Python log level (WARNING)")
    sub = parser.add_subparsers(dest="command", required=True)
    _call_parser(sub)
    sub.add_parser("demo", help="run the loopback demo (a simulated phone network)")
    worker = sub.add_parser(
        "worker", help="run call-host processes (Celery workers on the calls queue)"
    )
    worker.add_argument("--calls", type=int, required=True, help="concurrent calls to host")
    worker.add_argument(
        "--sip-port", type=int, default=5060, help="first SIP port; one per process (0: any)"
    )
    sub.add_parser(
        "scheduler", help="run the scheduling side: the tick, webhook delivery, Celery beat"
    )
    sub.add_parser("migrate", help="create or upgrade the database schema")
    dtmf = sub.add_parser("dtmf", help="find in-band DTMF digits in WAV files")
    dtmf.add_argument("files", nargs="+", help="WAV files (any rate, mono or stereo)")
    dtmf.add_argument("--json", action="store_true", help="one JSON object per file and line")
    amd = sub.add_parser("amd", help="answering-machine detection on recorded WAV files")
    amd.add_argument("files", nargs="+", help="callee audio from the answer (WAV, any rate)")
    amd.add_argument("--json", action="store_true", help="one JSON object per file and line")
    corpus = sub.add_parser(
        "amd-corpus", help="generate a labelled AMD corpus (WAVs + labels.jsonl) offline"
    )
    corpus.add_argument("out", help="directory to write")
    corpus.add_argument("--per-class", type=int, default=20, help="files per class")
    corpus.add_argument("--seed", type=int, default=1, help="random seed")
    corpus.add_argument(
        "--templates", choices=("dev", "heldout", "all"), default="dev", help="greeting set"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        if args.command == "call":
            return asyncio.run(_call(args))
        if args.command == "demo":
            from callfleet.demo import main as demo_main

            return demo_main()
        if args.command == "worker":
            from callfleet.workers.supervisor import Supervisor

            return Supervisor(args.calls, sip_port=args.sip_port, loglevel=args.log_level).run()
        if args.command == "scheduler":
            return _scheduler(args.log_level)
        if args.command == "amd":
            from callfleet.agents.amd.cli import run_amd_cli

            return run_amd_cli(args.files, as_json=args.json)
        if args.command == "amd-corpus":
            from callfleet.agents.amd.corpus import generate

            if args.per_class < 1:
                raise ValueError(f"--per-class must be at least 1, got {args.per_class}")
            labels = generate(args.out, args.per_class, args.seed, templates=args.templates)
            print(labels)
            return 0
        if args.command == "dtmf":
            return _dtmf(args.files, as_json=args.json)
        if args.command == "migrate":
            from callfleet.dialer.db import migrate
            from callfleet.settings import get_settings

            migrate(get_settings().database_url)
            return 0
    except ValueError as e:  # bad input: a clear message, no traceback
        print(f"callfleet {args.command}: {e}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
