"""RTP ingest, the pure core: packet parsing (:mod:`.packet`), payload decoding
(:mod:`.codecs`) and a per-stream jitter buffer (:mod:`.jitter`).  No sockets, no asyncio, no
wall clock: every time is passed in as seconds, so a UDP listener (or a test) drives it."""
