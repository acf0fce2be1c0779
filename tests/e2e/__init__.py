"""Guest-side end-to-end scenarios (run inside User Mode Linux by tests/test_e2e_*.py)."""
