"""The plugin side of the simulated cluster, in one place: the hand-off folder (handoff.py, the only contract between
the plugin and sim/, which imports nothing of either) and the child process the plugin starts (child.py)."""
