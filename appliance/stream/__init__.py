"""Streams and sessions: audio blocks, bounded queues, the call runners that drive the
engine (and the recognizer) block by block."""
