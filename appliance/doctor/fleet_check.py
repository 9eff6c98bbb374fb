"""Doctor check: the fleet (``[fleet]``): the settings, the credentials readable, one TLS +
MQTT CONNECT to the configured broker and its answer, and the outbox's figures."""

from __future__ import annotations

from collections.abc import Mapping

from appliance.config import Config
from appliance.config.fleet import check_files, read_password
from appliance.config_env import resolve_state_dir
from appliance.doctor.check import Check, fail, ok, warn
from appliance.errors import ApplianceError
from appliance.sinks.fleet.outbox import Outbox, outbox_path

NAME = "fleet"


def check_fleet(cfg: Config, env: Mapping[str, str], *, connect: bool = True) -> Check:
    fleet = cfg.fleet
    if not fleet.enabled:
        return ok(NAME, "off (the box publishes nothing; [fleet] enabled = true sends its "
                  "cues and summaries' figures to the site's MQTT broker)")
    notes = [f"broker {fleet.broker}, topics under {fleet.prefix()}/",
             f"user {fleet.username or '(none)'}"
             + (", client certificate" if fleet.client_cert else "")]
    try:
        password = read_password(fleet, env)
        check_files(fleet)
    except ApplianceError as exc:
        return fail(NAME, f"credentials: {exc.message}", "make the file readable by the "
                    "service (or fix [fleet] password_file / password_credential)", notes)
    path = outbox_path(resolve_state_dir(cfg.storage.state_dir, env))
    if path.exists():
        try:
            box = Outbox.open(path, max_messages=fleet.outbox_max_messages,
                              max_bytes=fleet.outbox_max_bytes)
        except ApplianceError as exc:
            return fail(NAME, f"outbox: {exc.message}", "move the outbox aside and restart",
                        notes)
        notes.append(f"outbox {path}: {box.pending} messages waiting, {box.evicted} evicted "
                     f"(bound {fleet.outbox_max_messages} messages)")
        evicted = box.evicted
        box.close()
    else:
        notes.append(f"outbox {path}: not created yet")
        evicted = 0
    if not connect:
        return ok(NAME, "configured (broker not tried)", notes)
    from appliance.sinks.fleet.probe import probe_broker

    code, answer = probe_broker(fleet, password)
    if code is not None:
        return fail(NAME, f"the broker's answer: {answer} [{code}]",
                    "check the broker address, [fleet] ca_file, username and password (or "
                    "the client certificate), and the firewall (IPAddressAllow)", notes)
    if evicted:
        return warn(NAME, f"{answer}; {evicted} messages were evicted from a full outbox",
                    "the broker was away long: raise [fleet] outbox_max_messages or keep "
                    "the broker reachable", notes)
    return ok(NAME, answer, notes)
