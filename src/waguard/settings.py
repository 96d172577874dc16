"""waguard's one settings model.

Read once at an entry point (`load_settings()`), then passed down; nothing deeper reads the
environment. Environment variables use the `WAGUARD_` prefix and `__` for nesting, e.g.
`WAGUARD_META__GRAPH_VERSION=v23.0`. A `.env` file in the working directory is read too.

Secrets are not settings: the Meta token, the app secret and the Slack credentials live in Vault and
the settings only name their paths. The one exception is the credential that opens Vault itself
(a token file, or an AppRole secret-id file), which has to come from somewhere outside Vault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from waguard.errors import ConfigError
from waguard.settings_env import HttpUrlStr, StrList, describe, keep_undecodable, unknown_variables

LOOPBACK = "127.0.0.1"
GRAPH_VERSION_PATTERN = r"^v[0-9]+\.[0-9]+$"


class MetaSettings(BaseModel):
    """Where the Graph API is and which business, app and WABA waguard protects."""

    model_config = {"extra": "forbid"}

    graph_url: HttpUrlStr = Field(
        f"http://{LOOPBACK}:8710",
        description="Base URL of the Graph API without the version: https://graph.facebook.com in "
        "production, the Meta simulator on the local stack.",
    )
    graph_version: str = Field(
        "v23.0", pattern=GRAPH_VERSION_PATTERN, description="Graph API version, e.g. v23.0."
    )
    app_id: str = Field("1000000001", pattern=r"^[0-9]+$", description="Meta app id.")
    business_id: str = Field(
        "2000000001", pattern=r"^[0-9]+$", description="Business Manager (business portfolio) id."
    )
    waba_id: str = Field(
        "3000000001", pattern=r"^[0-9]+$", description="Default WhatsApp Business Account id."
    )
    token_path: str = Field(
        "meta/system-user-token",
        description="Vault KV path of the system-user access token the playbooks act with.",
    )
    app_secret_path: str = Field(
        "meta/app-secret",
        description="Vault KV path of the app secret (keys appsecret_proof and webhook signatures).",
    )
    appsecret_proof: bool = Field(
        True, description="Send appsecret_proof on every Graph call (needed when 'Require App Secret' is on)."
    )
    timeout_s: float = Field(10.0, gt=0, le=120, description="Timeout of one Graph HTTP request, seconds.")
    retry_budget_s: float = Field(
        120.0, ge=0, le=3600,
        description="How long one Graph call keeps retrying throttled, transient or unanswered attempts "
        "before the step fails, seconds (0: no retries).",
    )
    backoff_cap_s: float = Field(
        10.0, gt=0, le=3600,
        description="Longest single wait between Graph retries, seconds: Meta's Retry-After and "
        "estimated_time_to_regain_access are honoured up to this.",
    )
    registration_retries: int = Field(
        2,
        ge=0,
        le=9,
        description="Retries of a register/deregister call; each attempt spends one of the number's 10 per "
                    "72 h.",
    )
    ledger_path: Path = Field(
        Path(".waguard/registration-ledger.sqlite3"),
        description="SQLite file of the register/deregister budget ledger (10 calls per number per 72 h).",
    )


class VaultSettings(BaseModel):
    """How to reach and log in to Vault (or OpenBao)."""

    model_config = {"extra": "forbid"}

    addr: HttpUrlStr = Field(f"http://{LOOPBACK}:8200", description="Vault address.")
    auth_method: Literal["token", "approle"] = Field("token", description="How waguard logs in to Vault.")
    token_file: Path | None = Field(
        Path(".waguard/vault-token"),
        description="File holding a Vault token (auth_method=token). `waguard up` writes the dev token here.",
    )
    token: SecretStr | None = Field(
        None, description="A Vault token given directly (auth_method=token); token_file is preferred."
    )
    approle_mount: str = Field("approle", description="Mount path of the AppRole auth method.")
    role_id: str | None = Field(None, description="AppRole role id (auth_method=approle).")
    secret_id_file: Path | None = Field(
        None, description="File holding the AppRole secret id (auth_method=approle)."
    )
    evidence_role_id: str | None = Field(
        None,
        description="AppRole role id that evidence signing logs in with, apart from the run's own login "
        "(deploy/vault/waguard-evidence.hcl); unset: evidence uses the run's login.",
    )
    evidence_secret_id_file: Path | None = Field(
        None, description="File holding the evidence role's AppRole secret id (with evidence_role_id)."
    )
    kv_mount: str = Field("secret", description="Mount path of the KV version 2 engine.")
    transit_mount: str = Field("transit", description="Mount path of the transit engine.")
    evidence_key: str = Field("waguard-evidence", description="Transit key (ed25519) that signs evidence.")
    timeout_s: float = Field(10.0, gt=0, le=120, description="Timeout of one Vault request, seconds.")

    @model_validator(mode="after")
    def _credentials_present(self) -> VaultSettings:
        if self.auth_method == "approle" and not (self.role_id and self.secret_id_file):
            raise ValueError(
                "auth_method=approle needs WAGUARD_VAULT__ROLE_ID and WAGUARD_VAULT__SECRET_ID_FILE"
            )
        if (self.evidence_role_id is None) != (self.evidence_secret_id_file is None):
            raise ValueError(
                "WAGUARD_VAULT__EVIDENCE_ROLE_ID and WAGUARD_VAULT__EVIDENCE_SECRET_ID_FILE go together"
            )
        if self.auth_method == "token" and not (self.token or self.token_file):
            raise ValueError("auth_method=token needs WAGUARD_VAULT__TOKEN_FILE or WAGUARD_VAULT__TOKEN")
        return self


class SlackSettings(BaseModel):
    """Where incident threads go."""

    model_config = {"extra": "forbid"}

    api_url: HttpUrlStr = Field(
        f"http://{LOOPBACK}:8720/api/",
        description="Slack Web API base URL: https://slack.com/api/ in production, the Slack simulator "
                    "locally.",
    )
    bot_token_path: str = Field("slack/bot-token", description="Vault KV path of the bot token (xoxb-...).")
    signing_secret_path: str = Field(
        "slack/signing-secret", description="Vault KV path of the Slack request-signing secret."
    )
    channel: str = Field("C0INCIDENT", description="Channel id where incident threads open.")
    escalation_channel: str = Field(
        "C0ESCALATE", description="Second channel an unanswered approval escalates to."
    )
    max_rate_limit_retries: int = Field(3, ge=0, le=10, description="Retries after a Slack 429.")


class PrefectSettings(BaseModel):
    """The Prefect server waguard's flows report to."""

    model_config = {"extra": "forbid"}

    api_url: HttpUrlStr = Field(f"http://{LOOPBACK}:4200/api", description="Prefect API URL.")
    ui_url: HttpUrlStr = Field(f"http://{LOOPBACK}:4200", description="Prefect UI URL (for links in Slack).")


class StackSettings(BaseModel):
    """The local stack that `waguard up` starts on loopback."""

    model_config = {"extra": "forbid"}

    home: Path = Field(
        Path(".waguard"), description="Project-local directory for state, logs and the dev token."
    )
    host: str = Field(LOOPBACK, description="Address every local service binds to.")
    prefect_port: int = Field(4200, ge=1024, le=65535, description="Prefect server port.")
    vault_port: int = Field(8200, ge=1024, le=65535, description="OpenBao dev server port.")
    meta_port: int = Field(8710, ge=1024, le=65535, description="Meta Graph simulator port.")
    slack_port: int = Field(8720, ge=1024, le=65535, description="Slack simulator port.")
    intake_port: int = Field(8730, ge=1024, le=65535, description="Intake service port.")
    prometheus_port: int = Field(8740, ge=1024, le=65535, description="Prometheus port (detection rules).")
    alertmanager_port: int = Field(8750, ge=1024, le=65535, description="Alertmanager port (to the intake).")


class LauncherSettings(BaseModel):
    """The launcher that executes playbook runs: one pre-imported parent, a forked process per run."""

    model_config = {"extra": "forbid"}

    enabled: bool = Field(True, description="`waguard up` starts the launcher; false: Prefect's serve() "
                          "runner instead (a fresh interpreter per run, seconds slower to start).")
    dir: Path = Field(Path(".waguard/launcher"), description="The launcher's run directory: its notify "
                      "socket (the intake's pickup hint), each run's pid and slot-lease files.")
    poll_s: float = Field(2.0, gt=0, le=60, description="Fallback poll for runs created elsewhere "
                          "(Prefect UI, retries), seconds.")
    limit: int = Field(32, ge=1, le=1000, description="Most runs one launcher executes at once.")
    work_pool: str = Field("waguard", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                           description="The Prefect work pool every launcher pulls playbook runs from.")


class EvidenceSettings(BaseModel):
    """Forensic evidence bundles."""

    model_config = {"extra": "forbid"}

    dir: Path = Field(Path(".waguard/evidence"), description="Directory evidence bundles are written to.")
    encrypt: bool = Field(False, description="Encrypt bundles with a data key from Vault transit.")
    encryption_key: str = Field(
        "waguard-evidence-enc", description="Transit key (aes256-gcm96) for data keys."
    )
    redaction_key_path: str = Field(
        "waguard/redaction-key", description="Vault KV path of the HMAC key that hashes phone numbers."
    )
    secret_prefixes: StrList = Field(
        default_factory=lambda: ["meta/", "slack/", "intake/", "waguard/"],
        description="Vault KV prefixes whose every value is removed from evidence (comma-separated).",
    )


class IntakeSettings(BaseModel):
    """The intake service: verified alert webhooks in, playbook runs out."""

    model_config = {"extra": "forbid"}

    public_url: HttpUrlStr = Field(
        f"http://{LOOPBACK}:8730",
        description="URL Meta and the alert sources reach the intake at; webhook overrides elsewhere are "
                    "foreign.",
    )
    alertmanager_token_path: str = Field(
        "intake/alertmanager-token", description="Vault KV path of the bearer token Alertmanager sends."
    )
    github_secret_path: str = Field(
        "intake/github-webhook-secret", description="Vault KV path of the GitHub webhook secret."
    )
    grafana_secret_path: str = Field(
        "intake/grafana-hmac-secret", description="Vault KV path of the Grafana webhook HMAC secret."
    )
    meta_verify_token_path: str = Field(
        "intake/meta-verify-token",
        description="Vault KV path of Meta's webhook verify token (GET handshake).",
    )
    rotation_window_path: str = Field(
        "waguard/app-secret-rotation",
        description="Vault KV path where the leaked-secret playbook records the previous secret's window.",
    )
    state_dir: Path = Field(Path(".waguard/intake"), description="Audit log and replay/dedup database.")
    max_body_bytes: int = Field(3_145_728, ge=1024, description="Largest request body accepted (Meta: 3 MB).")
    replay_ttl_s: int = Field(
        30 * 86400,
        ge=600,
        description="How long delivery ids and body hashes are remembered (Meta retries 7 d).",
    )
    max_header_bytes: int = Field(
        16_384, ge=1024, description="Largest request head (request line and headers) accepted; beyond: 431."
    )
    max_headers: int = Field(64, ge=8, description="Most header fields a request may carry; beyond: 431.")
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Seconds a connection has to send a complete request head; then 408 and closed.",
    )
    body_timeout_s: float = Field(
        10.0, gt=0, description="Seconds a request body may go without a byte arriving; then 408 and closed."
    )
    request_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Seconds from a request's first byte until its body has fully arrived (cuts trickles).",
    )
    max_connections: int = Field(
        1024, ge=16, description="Open connections at most; beyond, the oldest idle one is closed (else 503)."
    )
    metrics_listen: str = Field(
        "",
        pattern=r"^$|^[^\s:]+:\d{1,5}$",
        description="host:port serving /metrics, /healthz and /readyz apart from the webhooks; empty: on the "
                    "public port.",
    )
    audit_max_bytes: int = Field(
        10 * 1_048_576, ge=65_536, description="Size at which audit.jsonl is rotated (to audit.jsonl.1, ...)."
    )
    audit_backups: int = Field(5, ge=1, description="Rotated audit files kept.")
    rejection_sample_s: float = Field(
        60.0,
        gt=0,
        description="Per source and reason, one refused request is audited and logged per period; "
        "the rest are counted in the next record of that kind.",
    )
    log_max_bytes: int = Field(
        10 * 1_048_576, ge=65_536, description="Size at which the intake's log file is rotated."
    )
    log_backups: int = Field(3, ge=1, description="Rotated intake log files kept.")


class StateSettings(BaseModel):
    """Where waguard keeps its shared state: the intake's claims, replay cache and pending starts, and the
    registration-budget ledger (waguard.state)."""

    model_config = {"extra": "forbid"}

    dsn: str = Field(
        "",
        description="Empty: SQLite files on this machine (intake.state_dir, meta.ledger_path). "
        "postgresql://user@host:port/dbname[?sslmode=...&passfile=...]: one PostgreSQL database shared by "
        "every intake replica and run (the scaled profile). No password in the URL: libpq reads it from "
        "a passfile (?passfile= or PGPASSFILE).",
    )
    reconnect_s: float = Field(30.0, ge=0, description="How long a run or replica waits for a PostgreSQL "
                               "server that is away (restart, failover) before failing, naming dsn.")

    @field_validator("dsn")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be empty (SQLite) or a postgresql://user@host:port/dbname URL")
        if urlsplit(value).password is not None:
            raise ValueError("no password in the URL: give it in a passfile (?passfile=/path or PGPASSFILE)")
        return value


class Settings(BaseSettings):
    """Everything waguard reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="WAGUARD_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="forbid",
    )

    mode: Literal["drill", "live"] = Field(
        "drill", description="drill: the local simulators; live: real Meta and Slack."
    )
    meta: MetaSettings = Field(default_factory=MetaSettings, description="Meta Graph API.")
    vault: VaultSettings = Field(default_factory=VaultSettings, description="Vault / OpenBao.")
    slack: SlackSettings = Field(default_factory=SlackSettings, description="Slack.")
    prefect: PrefectSettings = Field(default_factory=PrefectSettings, description="Prefect.")
    stack: StackSettings = Field(default_factory=StackSettings, description="Local stack.")
    launcher: LauncherSettings = Field(default_factory=LauncherSettings, description="Run launcher.")
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings, description="Evidence bundles.")
    intake: IntakeSettings = Field(default_factory=IntakeSettings, description="Intake service.")
    state: StateSettings = Field(default_factory=StateSettings, description="Shared state backend.")
    runbooks_dir: Path = Field(Path("runbooks"), description="Directory of runbooks, policies and routing.")
    detection_dir: Path = Field(
        Path("detection"), description="Alerting rules, their tests, the Prometheus and Alertmanager configs."
    )
    incidents_dir: Path = Field(Path(".waguard/incidents"), description="Incident timelines and state.")

    @model_validator(mode="after")
    def _live_needs_real_endpoints(self) -> Settings:
        if self.mode == "live":
            for name, url in (("meta.graph_url", self.meta.graph_url), ("slack.api_url", self.slack.api_url)):
                if "127.0.0.1" in url or "localhost" in url:
                    env = "WAGUARD_" + name.upper().replace(".", "__")
                    raise ValueError(f"{env} ({name}): mode=live but it points at a local simulator ({url})")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # A value that is not JSON reaches validation, which names its variable (settings_env).
        return (
            init_settings,
            keep_undecodable(env_settings),
            keep_undecodable(dotenv_settings),
            file_secret_settings,
        )


def load_settings(**overrides: object) -> Settings:
    """Read the settings once, at an entry point.

    Raises:
        ConfigError: one line per unknown `WAGUARD_` variable (environment or .env) and per missing
            or invalid setting, each naming the variable.
    """
    env_file = overrides.get("_env_file", Settings.model_config.get("env_file"))
    problems = unknown_variables(Settings, env_file)  # type: ignore[arg-type]
    settings = None
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        problems += describe(err, env_file, already={line.split(" ", 1)[0].upper() for line in problems})  # type: ignore[arg-type]
    except SettingsError as err:  # whatever keep_undecodable does not cover; still no traceback
        problems.append(f"WAGUARD_*: {err}")
    if problems:
        if len(problems) == 1:
            raise ConfigError(f"invalid setting {problems[0]}")
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems))
    assert settings is not None
    return settings
