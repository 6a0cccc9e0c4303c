from __future__ import annotations

from pathlib import Path

import pytest

from galileo_otel.errors import ConfigError
from galileo_otel.settings import GalileoSettings, derive_api_url, parse_duration


def test_defaults() -> None:
    s = GalileoSettings()
    assert s.api_key is None
    assert s.reliable is True
    assert s.session_idle_timeout == 1800.0
    assert s.session_max_age is None
    assert s.resolved_api_url() == "https://api.galileo.ai"
    assert s.session_store_path() is None


@pytest.mark.parametrize(
    ("console", "api"),
    [
        ("https://app.galileo.ai", "https://api.galileo.ai"),
        ("https://app.galileo.ai/", "https://api.galileo.ai"),
        ("http://localhost:3000", "http://localhost:8088"),
        ("http://127.0.0.1:3000", "http://localhost:8088"),
        ("https://console.acme.galileocloud.io", "https://api.acme.galileocloud.io"),
    ],
)
def test_api_url_derived_from_console_url(console: str, api: str) -> None:
    assert derive_api_url(console) == api
    assert GalileoSettings(console_url=console).resolved_api_url() == api


def test_api_url_beats_console_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_CONSOLE_URL", "https://console.acme.io")
    monkeypatch.setenv("GALILEO_API_URL", "http://127.0.0.1:9999/")
    assert GalileoSettings().resolved_api_url() == "http://127.0.0.1:9999"


def test_argument_beats_galileo_env_beats_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "111")
    assert GalileoSettings().max_queue_spans == 111
    monkeypatch.setenv("GALILEO_MAX_QUEUE_SPANS", "222")
    assert GalileoSettings().max_queue_spans == 222
    assert GalileoSettings(max_queue_spans=333).max_queue_spans == 333


def test_otel_milliseconds_become_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "250")
    monkeypatch.setenv("OTEL_BSP_EXPORT_TIMEOUT", "5000")
    s = GalileoSettings()
    assert s.batch_delay == 0.25
    assert s.export_timeout == 5.0


def test_otel_sdk_disabled_and_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "chat-api")
    s = GalileoSettings()
    assert s.logging_disabled is True
    assert s.service_name == "chat-api"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("1.5", 1.5), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), (" 10s ", 10.0)],
)
def test_durations_accept_plain_seconds_and_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["abc", "-1", "1d", "", True])
def test_bad_durations_rejected(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_bad_env_value_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_SESSION_IDLE_TIMEOUT", "forever")
    with pytest.raises(
        ConfigError, match=r"GALILEO_SESSION_IDLE_TIMEOUT='forever': not a duration"
    ):
        GalileoSettings()


def test_bad_otel_value_names_the_otel_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "lots")
    with pytest.raises(ConfigError, match="OTEL_BSP_MAX_QUEUE_SIZE"):
        GalileoSettings()


def test_bad_argument_names_the_argument() -> None:
    with pytest.raises(ConfigError, match="argument 'batch_max_traces'"):
        GalileoSettings(batch_max_traces=0)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        GalileoSettings(reliable="maybe")


@pytest.mark.parametrize(
    "env", ["GALILEO_PROJECT_ID", "GALILEO_LOG_STREAM_ID", "GALILEO_EXPERIMENT_ID"]
)
def test_ids_must_be_uuids(monkeypatch: pytest.MonkeyPatch, env: str) -> None:
    monkeypatch.setenv(env, "not-a-uuid")
    with pytest.raises(ConfigError, match=f"{env}='not-a-uuid': not a UUID"):
        GalileoSettings()


@pytest.mark.parametrize("url", ["api.galileo.ai", "ftp://x.io", "http://", "not a url"])
def test_malformed_url_rejected(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("GALILEO_API_URL", url)
    with pytest.raises(ConfigError, match=r"GALILEO_API_URL.*not an http"):
        GalileoSettings()


def test_extra_headers_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_EXTRA_HEADERS", '{"X-Team": "ml"}')
    assert GalileoSettings().extra_headers == {"X-Team": "ml"}


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("{bad", "not valid JSON"),
        ('["a"]', "must be a JSON object"),
        ('{"a": 1}', "must be a JSON object"),
    ],
)
def test_bad_extra_headers_named_without_values(
    monkeypatch: pytest.MonkeyPatch, raw: str, why: str
) -> None:
    monkeypatch.setenv("GALILEO_EXTRA_HEADERS", raw)
    with pytest.raises(ConfigError, match=f"GALILEO_EXTRA_HEADERS: {why}") as info:
        GalileoSettings()
    assert raw not in str(info.value)  # header values may be credentials


def test_extra_headers_masked_in_repr() -> None:
    s = GalileoSettings(extra_headers={"Authorization": "Bearer hunter2"})
    assert "hunter2" not in repr(s)


def test_api_key_never_in_repr_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_API_KEY", "sk-very-secret")
    s = GalileoSettings()
    assert "sk-very-secret" not in repr(s)
    assert "sk-very-secret" not in str(s)
    assert s.api_key is not None and s.api_key.get_secret_value() == "sk-very-secret"
    monkeypatch.setenv("GALILEO_RELIABLE", "perhaps")
    with pytest.raises(ConfigError) as info:
        GalileoSettings()
    assert "sk-very-secret" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_metadata_attributes_csv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_SESSION_METADATA_ATTRIBUTES", "tenant.id, app.version,,")
    assert GalileoSettings().session_metadata_attributes == ["tenant.id", "app.version"]


def test_spool_path(tmp_path: Path) -> None:
    assert GalileoSettings(reliable=False).spool_path() is None
    assert GalileoSettings(spool_dir="off").spool_path() is None
    assert GalileoSettings(spool_dir=str(tmp_path)).spool_path() == tmp_path
    default = GalileoSettings().spool_path()
    assert default is not None and default.name == "spool"


def test_session_store(tmp_path: Path) -> None:
    assert GalileoSettings(session_store="sqlite").session_store_path() is not None
    path = tmp_path / "s.db"
    assert GalileoSettings(session_store=f"sqlite:///{path}").session_store_path() == path
    with pytest.raises(ConfigError, match=r"GALILEO_SESSION_STORE|session_store"):
        GalileoSettings(session_store="mysql://x")


def test_empty_env_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_PROJECT", "")
    assert GalileoSettings().project is None


def test_unknown_argument_rejected() -> None:
    with pytest.raises(ConfigError, match="idle_timout"):
        GalileoSettings(idle_timout=3)


# --- errors a user can act on ------------------------------------------------------------------


def test_bad_boolean_lists_the_accepted_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_RELIABLE", "yes please")
    with pytest.raises(ConfigError, match=r"GALILEO_RELIABLE='yes please': .*true or false"):
        GalileoSettings()


def test_negative_duration_says_what_a_duration_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_SESSION_IDLE_TIMEOUT", "-5")
    with pytest.raises(ConfigError) as info:
        GalileoSettings()
    message = str(info.value)
    assert "GALILEO_SESSION_IDLE_TIMEOUT='-5': not a duration in seconds" in message
    assert ">= 0" in message and "500ms" in message


def test_negative_duration_argument_says_the_same() -> None:
    with pytest.raises(ConfigError, match=r"argument 'batch_delay'=-1\.0: not a duration"):
        GalileoSettings(batch_delay=-1.0)


def test_out_of_range_integer_names_the_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_BATCH_MAX_TRACES", "0")
    with pytest.raises(ConfigError, match=r"'0': out of range: must be a whole number >= 1"):
        GalileoSettings()
    monkeypatch.setenv("GALILEO_BATCH_MAX_TRACES", "many")
    with pytest.raises(ConfigError, match=r"'many': not a whole number"):
        GalileoSettings()


def test_unknown_argument_suggests_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'session_idle_timeout'\?"):
        GalileoSettings(idle_timout=3)


def test_misspelt_env_var_gets_a_did_you_mean_warning_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from galileo_otel import settings as settings_module

    monkeypatch.setattr(settings_module, "_warned_env", set())
    monkeypatch.setenv("GALILEO_PROJCT", "chat")
    monkeypatch.setenv("GALILEO_SOMETHING_ELSE_ENTIRELY", "x")  # another tool's: not ours to judge
    with caplog.at_level("WARNING", logger="galileo_otel.settings"):
        GalileoSettings()
        GalileoSettings()
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "galileo-otel: GALILEO_PROJCT is not a galileo-otel setting and is ignored; "
        "did you mean GALILEO_PROJECT?"
    ]


def test_unknown_env_vars_lists_only_close_misses() -> None:
    from galileo_otel.settings import unknown_env_vars

    env = {
        "GALILEO_API_KEY": "k",
        "GALILEO_LOG_STRAEM": "prod",
        "GALILEO_RELIABEL": "true",
        "GALILEO_OTEL_WORKER_NICE": "5",  # read by the export worker, not a setting
        "GALILEO_UNRELATED_TOOL_FLAG": "1",
        "HOME": "/root",
    }
    assert unknown_env_vars(env) == [
        ("GALILEO_LOG_STRAEM", "GALILEO_LOG_STREAM"),
        ("GALILEO_RELIABEL", "GALILEO_RELIABLE"),
    ]


def test_session_store_redis_urls_and_sampling() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://h:6380/1", "unix:///run/redis.sock"):
        settings = GalileoSettings(session_store=url)
        assert settings.session_store_url() == url and settings.session_store_path() is None
    assert GalileoSettings().session_store_url() is None
    secret = GalileoSettings(session_store="redis://user:hunter2@127.0.0.1:6379/0")
    assert "hunter2" not in repr(secret) and "user:***@127.0.0.1:6379" in repr(secret)
    with pytest.raises(ConfigError, match="needs a host") as caught:
        GalileoSettings(session_store="redis://:hunter2@/0")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="socket path"):
        GalileoSettings(session_store="unix://")
    assert GalileoSettings().session_sample_rate == 1.0
    with pytest.raises(ConfigError, match=r"GALILEO_SESSION_SAMPLE_RATE|session_sample_rate"):
        GalileoSettings(session_sample_rate=1.5)
    assert GalileoSettings(session_store_ttl="1h").session_store_ttl == 3600.0


def test_official_sdk_variables_are_not_flagged_as_typos() -> None:
    import difflib

    from galileo_otel.settings import OFFICIAL_SDK_ENV_VARS, known_env_vars, unknown_env_vars

    # These two are close enough to ours that a plain did-you-mean would flag them.
    for name in ("GALILEO_PROJECT_NAME", "GALILEO_USERNAME"):
        assert difflib.get_close_matches(name, known_env_vars(), n=1, cutoff=0.8), name
    env = {name: "x" for name in OFFICIAL_SDK_ENV_VARS} | {"GALILEO_PROJCT": "typo"}
    assert unknown_env_vars(env) == [("GALILEO_PROJCT", "GALILEO_PROJECT")]


def test_official_sdk_config_fields_are_all_known() -> None:
    # The official SDK reads every field of its GalileoConfig from GALILEO_<FIELD>.
    base_config = pytest.importorskip("galileo_core.schemas.base_config")
    from galileo_otel.settings import OFFICIAL_SDK_ENV_VARS, known_env_vars

    theirs = {
        f"GALILEO_{name.upper()}"
        for name in base_config.GalileoConfig.model_fields
        if name != "validated_api_client"  # an object the SDK builds, never an env var
    }
    assert theirs - OFFICIAL_SDK_ENV_VARS - known_env_vars() == set()


@pytest.mark.parametrize("value", ["soon", "-5"])
def test_otel_millisecond_variables_say_milliseconds(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", value)
    with pytest.raises(ConfigError) as caught:
        GalileoSettings()
    message = str(caught.value)
    assert f"OTEL_BSP_SCHEDULE_DELAY={value!r}: not a duration in milliseconds" in message
    assert "in seconds" not in message


def test_otel_milliseconds_convert_and_galileo_seconds_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_EXPORT_TIMEOUT", "2500")
    assert GalileoSettings().export_timeout == 2.5
    monkeypatch.setenv("OTEL_BSP_EXPORT_TIMEOUT", "later")
    monkeypatch.setenv("GALILEO_EXPORT_TIMEOUT", "4")
    assert GalileoSettings().export_timeout == 4.0
