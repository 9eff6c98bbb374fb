"""The box's side of the fleet: its events, as MQTT messages, to the site's broker."""
