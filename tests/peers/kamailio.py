"""A private Kamailio registrar + proxy for tests (Debian's /usr/sbin/kamailio).

Each instance gets its own temp dir (config, pid file, runtime dir, optional TLS cert)
and listens on 127.0.0.1 only, on a port that is free for both UDP and TCP (plus a TLS
port when ``tls=True``). Kamailio runs in the foreground (``-DD -E``) as our child, in
its own process group, so ``stop()`` can always kill it and its workers.

Behaviour (domain ``127.0.0.1``, users and plaintext passwords from ``users``):

* REGISTER: no credentials -> ``401`` with a ``WWW-Authenticate: Digest`` challenge
  (``qop="auth"``, MD5); good credentials -> ``200`` and the contact is stored in usrloc
  (memory only); wrong password, unknown user, or auth user different from the To user
  -> ``403 Forbidden``.
* Out-of-dialog requests whose From domain is ours (``127.0.0.1``, any port): no
  credentials -> ``407`` with ``Proxy-Authenticate``; wrong password / unknown user /
  auth user different from the From user -> ``403``; good -> routed.
  Requests from other domains are routed without authentication.
* Routing: an R-URI for our domain is looked up in usrloc -> forwarded to the registered
  contact(s), else ``404 Not Found``; other R-URIs are relayed as they are.
* INVITE/SUBSCRIBE are record-routed (``;lr``), so in-dialog requests (ACK, BYE,
  re-INVITE, UPDATE, REFER, NOTIFY, INFO) pass through the proxy via loose routing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from .ports import HOST, Kind, free_port, free_port_pair, port_in_use
from .process import PeerProcess
from .sip import options_ping
from .tls import make_self_signed_cert

KAMAILIO_BIN = shutil.which("kamailio") or "/usr/sbin/kamailio"
MODULES_DIR = "/usr/lib/x86_64-linux-gnu/kamailio/modules"


def _cfg_string(value: str) -> str:
    """Quote ``value`` as a kamailio config string literal."""
    if any(c in value for c in '"\\\n\r'):
        raise ValueError(f"unsupported character in kamailio config value: {value!r}")
    return f'"{value}"'


class KamailioError(RuntimeError):
    """Kamailio failed to start or died."""


class Kamailio(PeerProcess):
    """A private kamailio registrar/proxy on 127.0.0.1 with digest auth.

    ``users`` maps user name -> plaintext password. ``tmp_path`` is a directory we may
    create files in (e.g. pytest's ``tmp_path``); a ``kamailio`` subdir is used.
    """

    error = KamailioError

    def __init__(
        self,
        users: Mapping[str, str],
        tmp_path: str | os.PathLike[str],
        *,
        tls: bool = False,
        port: int | None = None,
        tls_port: int | None = None,
        debug: int = 2,
        children: int = 2,
        start_timeout_s: float = 10.0,
    ) -> None:
        for user in users:
            if not user or not all(c.isalnum() or c in "-_.+" for c in user):
                raise ValueError(f"unsupported user name {user!r}")
        super().__init__(Path(tmp_path) / "kamailio", "kamailio.log", start_timeout_s, port)
        self.users: dict[str, str] = dict(users)
        self.tls = tls
        self.debug = debug
        self.children = children
        self._tls_port = tls_port

    # -- properties -------------------------------------------------------------------

    @property
    def domain(self) -> str:
        return HOST

    @property
    def host(self) -> str:
        return HOST

    @property
    def tls_port(self) -> int:
        if not self.tls:
            raise KamailioError("TLS not enabled (Kamailio(..., tls=True))")
        if self._tls_port is None:
            raise KamailioError("TLS port not chosen yet: call start() first")
        return self._tls_port

    @property
    def cert_path(self) -> Path:
        """Self-signed server certificate (PEM) used for TLS; also usable as a CA file."""
        return self.dir / "cert.pem"

    @property
    def key_path(self) -> Path:
        return self.dir / "key.pem"

    @property
    def hostport(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def uri(self) -> str:
        """SIP URI of the proxy itself (for an outbound proxy / registrar setting)."""
        return f"sip:{self.hostport}"

    def aor(self, user: str) -> str:
        """Address of record of ``user`` in our domain (``sip:user@127.0.0.1``)."""
        return f"sip:{user}@{self.domain}"

    @property
    def config_path(self) -> Path:
        return self.dir / "kamailio.cfg"

    # -- config -----------------------------------------------------------------------

    def _users_block(self) -> str:
        return "\n".join(
            f"    $sht(users=>{user}) = {_cfg_string(pw)};" for user, pw in self.users.items()
        )

    def _tls_cfg(self) -> str:
        return (
            "[server:default]\n"
            "method = TLSv1.2+\n"
            "verify_certificate = no\n"
            "require_certificate = no\n"
            f"private_key = {self.key_path}\n"
            f"certificate = {self.cert_path}\n"
            "\n"
            "[client:default]\n"
            "method = TLSv1.2+\n"
            "verify_certificate = no\n"
            "require_certificate = no\n"
        )

    def config_text(self) -> str:
        port = self.port
        listen = [f"listen=udp:{HOST}:{port}", f"listen=tcp:{HOST}:{port}"]
        tls_mod = ""
        if self.tls:
            listen.append(f"listen=tls:{HOST}:{self.tls_port}")
            listen.append("enable_tls=yes")
            tls_mod = (
                'loadmodule "tls.so"\n'
                f'modparam("tls", "config", {_cfg_string(str(self.dir / "tls.cfg"))})\n'
            )
        listen_block = "\n".join(listen)
        return _CONFIG_TEMPLATE.format(
            debug=self.debug,
            children=self.children,
            listen=listen_block,
            mpath=_cfg_string(MODULES_DIR + "/"),
            tls_mod=tls_mod,
            users=self._users_block(),
            domain=self.domain,
        )

    # -- lifecycle --------------------------------------------------------------------

    def _auto_ports(self) -> bool:
        return self._port is None and (self._tls_port is None or not self.tls)

    def _forget_ports(self) -> None:
        self._port = None
        self._tls_port = None

    def _prepare(self) -> list[str]:
        self.dir.mkdir(parents=True, exist_ok=True)
        run_dir = self.dir / "run"
        run_dir.mkdir(exist_ok=True)
        if self._port is None:
            self._port = free_port_pair()
        if self.tls:
            if self._tls_port is None:
                self._tls_port = free_port("tcp")
            if not self.cert_path.exists():
                try:
                    make_self_signed_cert(self.dir, HOST)  # cert_path, key_path
                except RuntimeError as e:
                    raise KamailioError(str(e)) from e
            (self.dir / "tls.cfg").write_text(self._tls_cfg())
        self.config_path.write_text(self.config_text())
        return [
            KAMAILIO_BIN,
            "-f",
            str(self.config_path),
            "-DD",  # stay in the foreground (workers are still forked)
            "-E",  # log to stderr
            "-L",
            MODULES_DIR,
            "-P",
            str(run_dir / "kamailio.pid"),
            "-Y",
            str(run_dir),
            "-w",
            str(run_dir),
            "-m",
            "32",
            "-M",
            "8",
            "-a",
            "no",
        ]

    def _ready(self) -> bool:
        # The sockets are bound by the main process before the workers fork, so a bound
        # port is not enough: wait until an OPTIONS ping gets an answer.
        ports: list[tuple[int, Kind]] = [(self.port, "udp"), (self.port, "tcp")]
        if self.tls:
            ports.append((self.tls_port, "tcp"))
        return all(port_in_use(p, k) for p, k in ports) and self._ping()

    def _not_ready_message(self) -> str:
        return f"kamailio not answering on {self.hostport}"

    def _ping(self, timeout_s: float = 0.5) -> bool:
        """Send a SIP OPTIONS over UDP and report whether any response came back."""
        return options_ping(HOST, self.port, timeout_s) is not None

    def __repr__(self) -> str:
        port = self._port if self._port is not None else "?"
        return f"<Kamailio {HOST}:{port} pid={self.pid} running={self.running}>"


_CONFIG_TEMPLATE = """#!KAMAILIO
# Generated by tests/peers/kamailio.py -- private test registrar/proxy.
debug={debug}
log_stderror=yes
log_prefix="{{$mt $hdr(CSeq) $ci}} "
children={children}
tcp_children={children}
auto_aliases=no
# On SIGTERM, main SIGKILLs workers still alive after this many seconds (default 60).
exit_timeout=1
{listen}
server_header="Server: callfleet-test-kamailio"
user_agent_header="User-Agent: callfleet-test-kamailio"

mpath={mpath}
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "auth.so"
loadmodule "htable.so"
{tls_mod}
modparam("rr", "enable_full_lr", 1)
modparam("rr", "append_fromtag", 1)
modparam("usrloc", "db_mode", 0)
modparam("registrar", "max_expires", 3600)
modparam("registrar", "min_expires", 10)
modparam("htable", "htable", "users=>size=4;")

event_route[htable:mod-init] {{
{users}
}}

request_route {{
    xlog("L_INFO", "REQ $rm $ru from $si:$sp/$pr\n");
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        route(WITHINDLG);
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            route(RELAY);
        }}
        exit;
    }}
    if (!is_method("ACK")) {{
        if (t_precheck_trans()) {{
            t_check_trans();
            exit;
        }}
        t_check_trans();
    }}
    if (is_method("REGISTER")) {{
        route(REGISTRAR);
        exit;
    }}
    if (is_method("OPTIONS") && $rU == $null && route(LOCAL_RURI)) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if ($fd == "{domain}") {{
        route(AUTH);
    }}
    remove_hf("Route");
    if (is_method("INVITE|SUBSCRIBE")) {{
        record_route();
    }}
    if (route(LOCAL_RURI)) {{
        if ($rU == $null) {{
            sl_send_reply("484", "Address Incomplete");
            exit;
        }}
        route(LOCATION);
    }}
    route(RELAY);
}}

# Is the R-URI ours: exactly one of our sockets, or our domain without a port? (Not
# "127.0.0.1 with any port": UAs on loopback have contacts on 127.0.0.1 as well.)
route[LOCAL_RURI] {{
    if (uri == myself) {{
        return 1;
    }}
    if ($rd == "{domain}" && $(ru{{uri.port}}) == "") {{
        return 1;
    }}
    return -1;
}}

route[AUTH] {{
    if ($au == $null) {{
        auth_challenge("$fd", "1");
        exit;
    }}
    if ($sht(users=>$au) == $null) {{
        xlog("L_NOTICE", "AUTH: unknown user '$au' -> 403\\n");
        sl_send_reply("403", "Forbidden");
        exit;
    }}
    $var(pw) = $sht(users=>$au);
    pv_auth_check("$fd", "$var(pw)", "0", "1");
    $var(rc) = $rc;
    if ($var(rc) < 0) {{
        xlog("L_NOTICE", "AUTH: $rm by '$au' failed with $var(rc)\\n");
        if ($var(rc) == -2 || $var(rc) == -3 || $var(rc) == -8) {{
            sl_send_reply("403", "Forbidden");
            exit;
        }}
        auth_challenge("$fd", "1");
        exit;
    }}
    consume_credentials();
}}

route[REGISTRAR] {{
    route(AUTH);
    if (!save("location")) {{
        sl_reply_error();
    }}
    exit;
}}

route[LOCATION] {{
    if (!lookup("location")) {{
        $var(rc) = $rc;
        t_newtran();
        if ($var(rc) == -2) {{
            send_reply("405", "Method Not Allowed");
            exit;
        }}
        send_reply("404", "Not Found");
        exit;
    }}
    route(RELAY);
}}

route[WITHINDLG] {{
    if (loose_route()) {{
        route(RELAY);
        exit;
    }}
    if (is_method("ACK")) {{
        if (t_check_trans()) {{
            route(RELAY);
        }}
        exit;
    }}
    sl_send_reply("404", "Not here");
    exit;
}}

onreply_route {{
    xlog("L_INFO", "RPL $rs $rr for $rm from $si:$sp/$pr\n");
}}

route[RELAY] {{
    if (!t_relay()) {{
        sl_reply_error();
    }}
    exit;
}}
"""
