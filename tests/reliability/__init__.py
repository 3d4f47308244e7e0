"""Reliability and scale proofs of the suite: fault matrix, interrupts, bad input."""
