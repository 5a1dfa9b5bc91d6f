"""Errors raised by callfleet.sip. PJSIP errors are re-raised as these, ``from`` the original."""


class SipError(Exception):
    """A SIP operation failed; ``status`` is the PJ status or SIP code when known."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CapacityError(SipError):
    """The endpoint already holds as many calls as its PJSIP build allows."""


class CallStateError(SipError):
    """The operation does not fit the call's current state (e.g. DTMF on an ended call)."""


class TransferError(SipError):
    """A transfer was refused or failed; ``status`` is the SIP code of the refusal."""
