"""Settings: defaults describe the local stack; bad input fails at start naming the variable."""

from pathlib import Path

import pytest
from pydantic import BaseModel

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
