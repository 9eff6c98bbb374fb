"""The per-call engine: voice activity, features, conversation state, hold, cue rules and
words.  No asyncio, no I/O: audio frames and words in, events out."""
