"""PJSUA2 configuration objects built from callfleet's config (engine thread only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pjsua2 as pj

from callfleet.sip.config import CODEC_IDS, EndpointConfig, Transport, TransportSpec, Trunk
from callfleet.sip.engine import pj_error

_PJ_TRANSPORT = {
    Transport.UDP: pj.PJSIP_TRANSPORT_UDP,
    Transport.TCP: pj.PJSIP_TRANSPORT_TCP,
    Transport.TLS: pj.PJSIP_TRANSPORT_TLS,
}
#: Asked for when no limit is configured: PJSUA cuts it to PJSUA_MAX_CALLS.
UNLIMITED_CALLS = 1024


def endpoint_config(config: EndpointConfig, log_writer: Any) -> Any:
    cfg = pj.EpConfig()
    ua = cfg.uaConfig
    ua.threadCnt = 0  # the engine thread polls; no PJSIP worker threads
    ua.mainThreadOnly = False
    ua.userAgent = config.user_agent
    ua.maxCalls = config.max_calls or UNLIMITED_CALLS
    cfg.logConfig.level = config.pjsip_log_level
    cfg.logConfig.consoleLevel = config.pjsip_log_level
    cfg.logConfig.writer = log_writer
    cfg.logConfig.decor = 0
    med = cfg.medConfig
    # The bridge runs at the trunk codecs' rate: for G.711 at 8 kHz no frame is
    # resampled, which is most of the media CPU PJSIP would spend per call.
    med.clockRate = config.bridge_clock_rate
    med.sndClockRate = config.bridge_clock_rate
    med.noVad = True  # keep RTP continuous: silence detection is the pipeline's job
    med.ecTailLen = 0  # no echo canceller on a server
    med.threadCnt = 1
    return cfg


def create_transport(ep: Any, spec: TransportSpec) -> tuple[int, int]:
    """Open ``spec``; returns PJSIP's transport id and the port actually bound."""
    tcfg = pj.TransportConfig()
    tcfg.port = spec.port
    tcfg.boundAddress = spec.bind_address
    if spec.public_address:
        tcfg.publicAddress = spec.public_address
    if spec.kind is Transport.TLS:
        tls = tcfg.tlsConfig
        tls.certFile = spec.tls_cert_file or ""
        tls.privKeyFile = spec.tls_key_file or ""
        tls.CaListFile = spec.tls_ca_file or ""
        tls.verifyServer = spec.tls_verify_server
        tls.method = pj.PJSIP_TLSV1_2_METHOD
    try:
        tid = ep.transportCreate(_PJ_TRANSPORT[spec.kind], tcfg)
    except pj.Error as e:
        raise pj_error(f"cannot open {spec.kind} transport on port {spec.port}", e) from e
    return tid, int(ep.transportGetInfo(tid).localName.split(":")[-1])


def set_codec_order(ep: Any, codecs: tuple[str, ...]) -> None:
    """Enable only ``codecs``, first preferred (per-trunk order is applied per call)."""
    for codec in ep.codecEnum2():
        ep.codecSetPriority(codec.codecId, 0)
    for priority, name in enumerate(reversed(codecs), start=128):
        ep.codecSetPriority(CODEC_IDS[name], priority)


def _media(acfg: Any, config: EndpointConfig) -> None:
    first = config.transports[0]
    rtp = acfg.mediaConfig.transportConfig
    rtp.port = config.rtp_port
    rtp.portRange = config.rtp_port_range
    rtp.boundAddress = "" if first.bind_address == "0.0.0.0" else first.bind_address
    if first.public_address:
        rtp.publicAddress = first.public_address
    acfg.callConfig.timerUse = pj.PJSUA_SIP_TIMER_OPTIONAL


def local_account_config(config: EndpointConfig) -> Any:
    """The identity of direct calls (no trunk); also receives unmatched inbound calls."""
    first = config.transports[0]
    host = first.public_address or first.bind_address
    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:{config.local_user}@{'127.0.0.1' if host == '0.0.0.0' else host}"
    _media(acfg, config)
    return acfg


def trunk_account_config(trunk: Trunk, transport_id: int, config: EndpointConfig) -> Any:
    acfg = pj.AccountConfig()
    acfg.idUri = trunk.account_uri()
    if trunk.caller_name:
        acfg.idUri = f'"{trunk.caller_name}" <{acfg.idUri}>'
    acfg.regConfig.registerOnAdd = trunk.register
    if trunk.register:
        acfg.regConfig.registrarUri = trunk.registrar_uri()
        acfg.regConfig.timeoutSec = trunk.register_expires_s
        acfg.regConfig.retryIntervalSec = 30
    proxy = trunk.proxy_uri()
    if proxy:
        acfg.sipConfig.proxies.append(proxy)
    if trunk.username and trunk.password is not None:
        user = trunk.auth_username or trunk.username
        acfg.sipConfig.authCreds.append(
            pj.AuthCredInfo("digest", trunk.realm, user, 0, trunk.password)
        )
    acfg.sipConfig.transportId = transport_id
    _media(acfg, config)
    return acfg


def make_call_param(from_uri: str | None, headers: Mapping[str, str]) -> Any:
    prm = pj.CallOpParam(True)
    prm.opt.audioCount = 1
    prm.opt.videoCount = 0
    if from_uri:
        prm.txOption.localUri = from_uri
    for name, value in headers.items():
        header = pj.SipHeader()
        header.hName, header.hValue = name, value
        prm.txOption.headers.append(header)
    return prm
