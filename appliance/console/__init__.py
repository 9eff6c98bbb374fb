"""The supervisor console: what the site's boxes publish to the MQTT broker, gathered into
one central store (:mod:`~appliance.console.store`) by :mod:`~appliance.console.ingest`,
shown as the floor now and the trends per agent and team (:mod:`~appliance.console.trends`,
:mod:`~appliance.console.web`).  Counts and figures of etiquette cues only: no audio and no
words ever reach the console (the boxes never publish them)."""
