"""Audio sources: WAV files and streams, the headset, a replayed recording; resampling to
the stream's rate."""
