"""Audio input: file decoding, resampling and the common frame format."""

#: Every source delivers audio to the pipeline at this rate, mono int16 per party.
PIPELINE_RATE_HZ = 16000
