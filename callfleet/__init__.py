"""callfleet: outbound and inbound SIP calling for AI voice agents."""

__version__ = "0.1.0"
