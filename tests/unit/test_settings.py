"""Settings: defaults describe the local stack; bad input fails at start naming the variable."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from waguard.errors import ConfigError
from waguard.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def env_names(model: type[BaseModel], prefix: str = "WAGUARD_") -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            names += env_names(ann, f"{prefix}{name.upper()}__")
        else:
            names.append(f"{prefix}{name.upper()}")
    return names


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("WAGUARD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_point_at_the_local_stack() -> None:
    s = load_settings()
    assert s.mode == "drill"
    assert s.meta.graph_url.startswith("http://127.0.0.1")
    assert s.meta.graph_version == "v23.0"


def test_nested_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAGUARD_META__GRAPH_VERSION", "v25.0")
    monkeypatch.setenv("WAGUARD_STACK__META_PORT", "9710")
    s = load_settings()
    assert (s.meta.graph_version, s.stack.meta_port) == ("v25.0", 9710)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("WAGUARD_META__GRAPH_VERSION", "23.0"),
        ("WAGUARD_META__WABA_ID", "abc"),
        ("WAGUARD_STACK__PREFECT_PORT", "80"),
        ("WAGUARD_META__TIMEOUT_S", "-1"),
        ("WAGUARD_MODE", "prod"),
        ("WAGUARD_VAULT__ADDR", "notaurl"),
        ("WAGUARD_PREFECT__UI_URL", "ftp://127.0.0.1:4200"),
        ("WAGUARD_INTAKE__PUBLIC_URL", "http://127.0.0.1:notaport"),
    ],
)
def test_a_bad_setting_fails_naming_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert var in str(err.value)


def test_approle_without_its_credentials_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAGUARD_VAULT__AUTH_METHOD", "approle")
    with pytest.raises(ConfigError, match="WAGUARD_VAULT"):
        load_settings()


def test_live_mode_refuses_simulator_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAGUARD_MODE", "live")
    with pytest.raises(ConfigError, match="meta.graph_url"):
        load_settings()


def test_a_vault_token_given_directly_is_masked_in_every_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAGUARD_VAULT__TOKEN", "hvs.canary-token-value")
    s = load_settings()
    for rendering in (repr(s), str(s), s.model_dump_json()):
        assert "canary-token-value" not in rendering


def test_every_setting_is_documented_in_env_example() -> None:
    documented = (ROOT / ".env.example").read_text()
    missing = [name for name in env_names(Settings) if f"{name}=" not in documented]
    assert not missing, f".env.example lacks {missing}"


def test_every_setting_has_a_description() -> None:
    def undescribed(model: type[BaseModel]) -> list[str]:
        out = []
        for name, field in model.model_fields.items():
            if not field.description:
                out.append(f"{model.__name__}.{name}")
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                out += undescribed(ann)
        return out

    assert undescribed(Settings) == []


def waguard_config(cwd: Path, env: dict[str, str] | None = None,
                   dotenv: str | None = None) -> subprocess.CompletedProcess[str]:
    """`waguard config` as a responder runs it: its own process, a working directory, maybe a .env."""
    if dotenv is not None:
        (cwd / ".env").write_text(dotenv)
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("WAGUARD_")}
    return subprocess.run([str(ROOT / ".venv" / "bin" / "waguard"), "config"], cwd=cwd,
                          env={**clean, **(env or {})}, capture_output=True, text=True, timeout=120)


def test_env_example_copied_to_dot_env_loads_as_is_and_documents_the_defaults(tmp_path: Path) -> None:
    done = waguard_config(tmp_path, dotenv=(ROOT / ".env.example").read_text())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == json.loads(Settings().model_dump_json())


@pytest.mark.parametrize(
    ("var", "value", "where", "says"),
    [
        ("WAGUARD_VAULT__ADDR", "notaurl", "env", "http"),
        ("WAGUARD_VAULT__ADDR", "notaurl", "dotenv", "http"),
        ("WAGUARD_VAULT_ADDR", "http://127.0.0.1:8200", "env", "did you mean WAGUARD_VAULT__ADDR?"),
        ("WAGUARD_VAULT_ADDR", "http://127.0.0.1:8200", "dotenv", "did you mean WAGUARD_VAULT__ADDR?"),
        ("WAGUARD_SLAK__CHANNEL", "C0X", "dotenv", "did you mean WAGUARD_SLACK__CHANNEL?"),
        ("WAGUARD_META__GRAPH_VERISON", "v23.0", "env", "did you mean WAGUARD_META__GRAPH_VERSION?"),
        ("WAGUARD_EVIDENCE__SECRET_PREFIXES", "['meta/', 'slack/']", "env", "comma-separated"),
        ("WAGUARD_EVIDENCE__SECRET_PREFIXES", "['meta/', 'slack/']", "dotenv", "comma-separated"),
        ("WAGUARD_EVIDENCE", "not-json", "env", "EvidenceSettings"),
    ],
)
def test_a_settings_error_is_one_line_naming_the_variable_through_the_cli(
    tmp_path: Path, var: str, value: str, where: str, says: str
) -> None:
    if where == "env":
        done = waguard_config(tmp_path, env={var: value})
    else:
        done = waguard_config(tmp_path, dotenv=f"{var}={value}\n")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert var in lines[0] and says in lines[0], lines[0]
    if where == "dotenv":
        assert ".env" in lines[0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("meta/,slack/", ["meta/", "slack/"]), ("meta/", ["meta/"]),
     ('["meta/", "slack/"]', ["meta/", "slack/"])],
)
def test_a_list_is_read_comma_separated_or_as_json(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv("WAGUARD_EVIDENCE__SECRET_PREFIXES", value)
    assert load_settings().evidence.secret_prefixes == expected


def test_every_problem_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAGUARD_VAULT_ADDR", "http://127.0.0.1:8200")
    monkeypatch.setenv("WAGUARD_META__GRAPH_URL", "graph.facebook.com")
    with pytest.raises(ConfigError) as err:
        load_settings()
    lines = str(err.value).splitlines()[1:]
    assert sorted(line.split()[0] for line in lines) == ["WAGUARD_META__GRAPH_URL", "WAGUARD_VAULT_ADDR"]


def test_waguard_variables_that_are_not_settings_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # WAGUARD_HOME is given to the deployment runner for prefect.yaml's pull step.
    monkeypatch.setenv("WAGUARD_HOME", "/srv/waguard")
    assert load_settings().mode == "drill"


@pytest.mark.parametrize(("dsn", "why"), [
    ("postgresql://waguard:hunter2@db:5432/waguard", "no password in the URL"),
    ("postgresql://waguard:@db/waguard", "no password in the URL"),
    ("mysql://waguard@db/waguard", "postgresql://"),
])
def test_a_state_dsn_with_a_password_or_another_scheme_is_refused(dsn: str, why: str) -> None:
    from waguard.settings import StateSettings

    with pytest.raises(ValidationError, match=re.escape(why)):
        StateSettings(dsn=dsn)
    assert StateSettings(dsn="postgresql://waguard@db:5432/waguard?passfile=/etc/pgpass").dsn
