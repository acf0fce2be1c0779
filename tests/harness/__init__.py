"""Helpers for the real-kernel (User Mode Linux) and interop test tiers.

uml     boot UML, run a command or a Python function inside, get rc/stdout/stderr/result
netns   the gwA/gwB/lanA/lanB topology, setns helpers, ESP counters, ping
peers   IKEv1 peer drivers (strongSwan, libreswan; ikepriv plugs into the same interface)
interop one initiator/responder scenario over the topology, with checks and timings
"""
