"""PBX audio taps: the pure protocol cores (no sockets, no asyncio, no clock): Asterisk
AudioSocket (:mod:`.audiosocket`, leg pairing in :mod:`.legs`) and the WebSocket audio forks
of FreeSWITCH ``mod_audio_fork`` / ``mod_audio_stream`` and jambonz ``listen``
(:mod:`.wsfork`); and the listeners that drive them over sockets: the WebSocket tap's
``aiohttp.web`` routes (:mod:`.ws_listener`)."""
