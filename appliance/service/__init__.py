"""Running as a systemd service: the sd_notify protocol (:mod:`.notify`) and the installer
of the hardened unit (:mod:`.install`, ``appliance install-service``)."""
