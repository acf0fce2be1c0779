"""The negotiation core: pure, sans-I/O, deterministic (clock and randomness injected).

Its modules form layers; each imports only from the layers before it
(tests/test_import_structure.py checks that the graph has no cycle):

1. ground: values, records and tables, no logic that reaches other modules —
   settings, config_snapshot, cookies, half_open, retransmit, offers, identities,
   datagram (Inbound), states (state enums and transition tables),
   dpd_state, sa_table, wire, lifetimes (deadline arithmetic), hooks,
   fragments (IKE fragmentation: vendor ID policy, cutting, bounded reassembly);
2. context: the `Core` protocol, what the modules below the engine need from it;
3. services: informational_send (notifies and deletes), install (kernel requests);
4. exchanges and their policies: exchanges/quick_mode, dpd, rekey,
   exchanges/informational (receiving), exchanges/phase1, exchanges/main_mode,
   exchanges/aggressive_mode; natt (the default hooks);
5. timers: when each SA next needs the clock, and what runs then;
6. engine: the Negotiator, which owns the tables and every dispatch table.

A lower module that must make something above it happen calls back through the context
(`child_removed`, `child_installed`, `isakmp_established`, `start_phase1`, ...).
"""
