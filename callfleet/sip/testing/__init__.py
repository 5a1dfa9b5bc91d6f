"""A scriptable SIP test phone that runs in its own process.

Used by callfleet's tests (real SIP between processes) and by ``callfleet demo`` as the
far end. ``TestPhone`` (client.py) starts and drives it; ``phone.py`` is the process.
"""

from callfleet.sip.testing.client import TestPhone
from callfleet.sip.testing.script import PhoneScript

__all__ = ["PhoneScript", "TestPhone"]
