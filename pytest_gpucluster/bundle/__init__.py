"""The report folder as a bundle that travels: what the run saw (recording), re-judging it, its manifest, signature
and verification. docs/report.md "The bundle" says how a vendor and a buyer use it."""
