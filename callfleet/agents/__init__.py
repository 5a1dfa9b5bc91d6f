"""Voice agents on calls: Agent / AgentSession, providers, call intelligence (issues 3, 4).

Talks to calls only through the call interface of ``callfleet.sip.call.Call``.
"""
