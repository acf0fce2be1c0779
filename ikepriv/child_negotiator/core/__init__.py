"""The negotiation core: pure, sans-I/O, deterministic (clock and randomness injected)."""
