"""PBX audio taps: the pure protocol cores (no sockets, no asyncio, no clock) that the
listeners use: Asterisk AudioSocket (:mod:`.audiosocket`) and the WebSocket audio forks of
FreeSWITCH ``mod_audio_fork`` / ``mod_audio_stream`` and jambonz ``listen`` (:mod:`.wsfork`)."""
