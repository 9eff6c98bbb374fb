"""Environment overrides, the token credential, the state directory, and what a reload can
apply live."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import Config, config_from_dict, load_config
from appliance.config_env import (
    ENV_OVERRIDES,
    default_config_path,
    overridden_by,
    resolve_state_dir,
)
from appliance.errors import ApplianceError
from appliance.service.reload import changed_keys, restart_needed
from tests.memlimit import error_code_under_limit


def test_env_overrides_apply_on_top_of_the_file(tmp_path: Path) -> None:
    f = tmp_path / "a.toml"
    f.write_text('language = "de"\n[dashboard]\nport = 9001\n[logging]\nlevel = "error"\n')
    env = {"APPLIANCE_DASHBOARD_PORT": "9100", "APPLIANCE_LOG_LEVEL": "DEBUG",
           "APPLIANCE_LANGUAGE": "fr", "APPLIANCE_AUDIO_DEVICE": "USB Headset",
           "UNRELATED": "x"}
    cfg = load_config(f, env)
    assert cfg.dashboard.port == 9100 and cfg.logging.level == "debug"
    assert cfg.language == "fr" and cfg.audio.device == "USB Headset"
    # without the environment the file's own values stand
    assert load_config(f).dashboard.port == 9001
    assert overridden_by(env) == ["APPLIANCE_LANGUAGE", "APPLIANCE_DASHBOARD_PORT",
                                  "APPLIANCE_AUDIO_DEVICE", "APPLIANCE_LOG_LEVEL"]


@pytest.mark.parametrize(("env", "needle"), [
    ({"APPLIANCE_DASHBOARD_PORT": "eighty"}, "APPLIANCE_DASHBOARD_PORT: must be a whole number"),
    ({"APPLIANCE_DASHBOARD_PORT": "70000"}, "(with APPLIANCE_DASHBOARD_PORT): [dashboard] port"),
    ({"APPLIANCE_LOG_LEVEL": "chatty"}, "[logging] level: 'chatty': allowed debug, info"),
    ({"APPLIANCE_DASHBOARD_HOST": "0.0.0.0"}, "[dashboard] host: '0.0.0.0' is beyond loopback"),
])
def test_bad_overrides_name_the_variable_and_the_key(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ApplianceError) as exc:
        load_config(None, env)
    assert exc.value.code == "config.invalid"
    assert needle in exc.value.message


def test_beyond_loopback_needs_a_token_from_config_env_or_credential(tmp_path: Path) -> None:
    with pytest.raises(ApplianceError, match="beyond loopback"):
        config_from_dict({"dashboard": {"host": "192.168.1.20"}})
    assert config_from_dict({"dashboard": {"host": "::1"}}).dashboard.host == "::1"
    assert config_from_dict({"dashboard": {"host": "localhost"}}).dashboard.token == ""
    cfg = load_config(None, {"APPLIANCE_DASHBOARD_HOST": "0.0.0.0",
                             "APPLIANCE_DASHBOARD_TOKEN": "s3cret-token"})
    assert cfg.dashboard.token == "s3cret-token"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "dashboard-token").write_text("from-credential\n")
    cfg = load_config(None, {"APPLIANCE_DASHBOARD_HOST": "10.0.0.5",
                             "CREDENTIALS_DIRECTORY": str(creds)})
    assert cfg.dashboard.token == "from-credential"


def test_the_token_value_never_appears_in_an_error() -> None:
    with pytest.raises(ApplianceError) as exc:
        load_config(None, {"APPLIANCE_DASHBOARD_TOKEN": "tok-1234567",
                           "APPLIANCE_DASHBOARD_PORT": "0"})
    assert "tok-1234567" not in str(exc.value)


def test_default_config_path_and_state_dir(tmp_path: Path, monkeypatch) -> None:
    assert default_config_path({"APPLIANCE_CONFIG": "/x/y.toml"}) == Path("/x/y.toml")
    monkeypatch.setattr("appliance.config_env.SYSTEM_CONFIG", tmp_path / "none.toml")
    assert default_config_path({}) is None
    (tmp_path / "none.toml").write_text("")
    assert default_config_path({}) == tmp_path / "none.toml"
    assert resolve_state_dir("/srv/a", {"STATE_DIRECTORY": "/var/lib/b"}) == Path("/srv/a")
    assert resolve_state_dir("", {"STATE_DIRECTORY": "/var/lib/b:/var/lib/c"}) == \
        Path("/var/lib/b")
    monkeypatch.setattr("appliance.config_env.SERVICE_UNIT", tmp_path / "no.service")
    assert resolve_state_dir("", {}) == Path.home() / ".local/state/appliance"
    (tmp_path / "no.service").write_text("[Service]\n")  # installed: where it writes
    assert resolve_state_dir("", {}) == Path("/var/lib/appliance")
    cfg = load_config(None, {"APPLIANCE_STATE_DIR": str(tmp_path)})
    assert resolve_state_dir(cfg.storage.state_dir, {"STATE_DIRECTORY": "/v"}) == tmp_path


def test_every_override_targets_a_real_key() -> None:
    cfg = Config()
    for section, key, _ in ENV_OVERRIDES.values():
        owner = getattr(cfg, section) if section else cfg
        assert hasattr(owner, key), (section, key)


def test_reload_tells_live_settings_from_restart_ones() -> None:
    old = Config()
    new = config_from_dict({"rate": {"max_wpm": 160.0}, "logging": {"level": "debug"},
                            "storage": {"summaries_days": 30.0}})
    assert set(changed_keys(old, new)) == {"rate.max_wpm", "logging.level",
                                           "storage.summaries_days"}
    assert restart_needed(old, new) == []
    new2 = config_from_dict({"audio": {"device": "USB"}, "language": "de",
                             "dashboard": {"port": 9000, "token": "abc"}})
    assert restart_needed(old, new2) == ["language", "audio.device", "dashboard.port",
                                         "dashboard.token"]


def test_a_misplaced_token_is_never_echoed(tmp_path: Path) -> None:
    f = tmp_path / "a.toml"
    f.write_text("[dashboard]\ntoken = 82736451\n")
    with pytest.raises(ApplianceError) as exc:
        load_config(f)
    assert "82736451" not in str(exc.value) and "[dashboard] token" in exc.value.message


def test_credential_and_table_problems_are_config_errors(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "dashboard-token").write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ApplianceError, match="credential dashboard-token: cannot read"):
        load_config(None, {"CREDENTIALS_DIRECTORY": str(creds)})
    (creds / "dashboard-token").write_text("tok")
    f = tmp_path / "a.toml"
    f.write_text("dashboard = 5\n")
    with pytest.raises(ApplianceError, match=r"\[dashboard\] must be a table"):
        load_config(f, {"CREDENTIALS_DIRECTORY": str(creds)})
    with pytest.raises(ApplianceError, match=r"\[dashboard\] must be a table"):
        load_config(f, {"APPLIANCE_DASHBOARD_PORT": "9000"})


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "+nan"])
@pytest.mark.parametrize("key", ["[dashboard]\nsnapshot_s", "[storage]\nsummaries_max_mb",
                                 "[audio]\nblock_s", "[tone]\nbaseline_span_s",
                                 "[hold]\ntoo_long_s", "[vad]\nlevel_snr_db"])
def test_nan_and_infinity_are_refused_for_every_number(tmp_path: Path, key: str,
                                                       text: str) -> None:
    """NaN compares false with everything, so a plain range check let it through (issue
    10); infinity is out of every range."""
    f = tmp_path / "a.toml"
    f.write_text(f"{key} = {text}\n")
    with pytest.raises(ApplianceError, match="out of range"):
        load_config(f, env={})


def test_huge_whole_numbers_are_out_of_range_not_a_crash(tmp_path: Path) -> None:
    f = tmp_path / "a.toml"
    f.write_text(f"[audio]\nagent_channel = {10 ** 400}\n")
    with pytest.raises(ApplianceError, match="out of range"):
        load_config(f, env={})


@pytest.mark.parametrize("text", ["a = " + "[" * 2000 + "]" * 2000,

                                  "[audio]\nagent_channel = " + "9" * 5000,
                                  "# padding\n" * 40000])
def test_deep_long_or_huge_config_is_a_clean_error(tmp_path: Path, text: str) -> None:
    f = tmp_path / "a.toml"
    f.write_text(text)
    with pytest.raises(ApplianceError):
        load_config(f, env={})



@pytest.mark.parametrize("text", [".".join(["a"] * 20_000) + " = 1\n",
                                  "[" + ".".join(["t"] * 20_000) + "]\n"])
def test_keys_20000_levels_deep_are_refused_before_parsing(tmp_path: Path, text: str) -> None:
    """40 KB of dotted keys cost tomllib 1.6 GB (issue 10, finding 4): under a 512 MiB
    address-space limit the loader must still answer with a config error."""
    f = tmp_path / "deep.toml"
    f.write_text(text)
    code, err = error_code_under_limit("from appliance.config import load_config as f",
                                       str(f), 512 << 20)
    assert code == "config.invalid", err


def test_a_byte_order_mark_is_fine_and_other_encodings_are_named(tmp_path: Path) -> None:
    f = tmp_path / "bom.toml"
    f.write_bytes(b"\xef\xbb\xbf" + b'language = "de"\n')
    assert load_config(f, env={}).language == "de"
    f = tmp_path / "latin1.toml"
    f.write_bytes('# Grüße\nlanguage = "de"\n'.encode("latin-1"))
    with pytest.raises(ApplianceError) as err:
        load_config(f, env={})
    assert err.value.code == "config.invalid"  # readable, but not UTF-8: not "not found"
    assert "line 1 is not UTF-8" in err.value.message
    assert "save the file as UTF-8" in err.value.message
    with pytest.raises(ApplianceError) as err:
        load_config(tmp_path, env={})
    assert err.value.code == "config.not_found" and "is a directory" in err.value.message


@pytest.mark.parametrize("lang", ["../../etc/passwd", "EN", "english", "e n", ""])
def test_the_language_is_a_code_not_a_path(tmp_path: Path, lang: str) -> None:
    f = tmp_path / "a.toml"
    f.write_text(f'language = "{lang}"\n')
    with pytest.raises(ApplianceError, match="not a language code") as err:
        load_config(f, env={})
    assert err.value.code == "config.invalid"


def test_a_huge_value_is_cut_in_the_message(tmp_path: Path) -> None:
    f = tmp_path / "a.toml"
    for text in (f'[logging]\nlevel = "{"x" * 100_000}"\n', f'language = "{"y" * 100_000}"\n',
                 f"[audio]\nagent_channel = {10 ** 400}\n"):
        f.write_text(text)
        with pytest.raises(ApplianceError) as err:
            load_config(f, env={})
        assert len(err.value.message) < 400 and "characters)" in err.value.message


def test_every_error_message_is_bounded() -> None:
    msg = ApplianceError("x.y", "a" * 50_000 + " the fix is here").message
    assert len(msg) < 1100 and msg.endswith("the fix is here")


def test_overrides_never_walk_the_values_of_the_file() -> None:
    """``apply_env`` once deep-copied the parsed file: a value nested thousands deep (found
    by ``benchmarks.fuzz``) was a RecursionError instead of a config error."""
    from appliance.config_env import apply_env

    deep: list = []
    for _ in range(5000):
        deep = [deep]
    raw = {"vad": {"on_threshold": deep}, "audio": {"device": "x"}}
    out = apply_env(raw, {"APPLIANCE_AUDIO_DEVICE": "USB", "APPLIANCE_DASHBOARD_PORT": "9000"})
    assert out["audio"]["device"] == "USB" and raw["audio"]["device"] == "x"  # a copy
    assert out["dashboard"] == {"port": 9000} and "dashboard" not in raw
    assert out["vad"]["on_threshold"] is deep
