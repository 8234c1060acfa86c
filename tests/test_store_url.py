"""DATABASE_URL parsing and open_store's choice of store (asyncpg loaded only for PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from callback_server.settings import ServerSettings
from callback_server.store import DatabaseUrl, open_store, parse_database_url
from callback_server.store.sqlite import SqliteDatabase
from orfeas.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///orfeas-callbacks.db", DatabaseUrl("sqlite", "orfeas-callbacks.db")),
        ("sqlite:///./data/cb.db", DatabaseUrl("sqlite", "./data/cb.db")),
        ("sqlite:////var/lib/orfeas/cb.db", DatabaseUrl("sqlite", "/var/lib/orfeas/cb.db")),
        ("sqlite:///with%20space.db", DatabaseUrl("sqlite", "with space.db")),
        ("postgresql://u:p@db:5432/orfeas", DatabaseUrl("postgresql", "postgresql://u:p@db:5432/orfeas")),
        ("postgres://db/orfeas", DatabaseUrl("postgresql", "postgres://db/orfeas")),
        (
            "postgresql:///orfeas?host=/run/postgresql",
            DatabaseUrl("postgresql", "postgresql:///orfeas?host=/run/postgresql"),
        ),
    ],
)
def test_valid_urls(url: str, expected: DatabaseUrl) -> None:
    """SQLite paths (relative, absolute, escaped) and PostgreSQL DSNs are recognised."""
    assert parse_database_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "mysql://db/x",
        "orfeas.db",
        "sqlite://host/x.db",
        "sqlite:///",
        "sqlite:///data/",
        "sqlite:///:memory:",
        "postgresql://db:notaport/x",
        "postgresql:///x",
    ],
)
def test_malformed_urls_name_the_variable(url: str) -> None:
    """A malformed URL is a ConfigError on DATABASE_URL."""
    with pytest.raises(ConfigError) as info:
        parse_database_url(url)
    assert info.value.field == "DATABASE_URL"
    assert info.value.code == "config_error"


def test_password_is_not_echoed() -> None:
    """The message of a bad PostgreSQL URL hides its password."""
    with pytest.raises(ConfigError) as info:
        parse_database_url("postgresql://user:hunter2@db:99999/x")
    assert "hunter2" not in str(info.value)


def test_the_store_is_the_one_database_url_names(tmp_path: Path) -> None:
    """DATABASE_URL (read by the settings) names the store; unset, it is the default SQLite file."""
    store = open_store(ServerSettings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path}/env.db"}).database_url)
    assert isinstance(store.db, SqliteDatabase)
    assert store.db.path == f"{tmp_path}/env.db"
    default = open_store(ServerSettings.from_env({}).database_url)
    assert isinstance(default.db, SqliteDatabase)
    assert default.db.path == "./callback_server.db"
    with pytest.raises(ConfigError):
        open_store("redis://nope")


def test_asyncpg_is_imported_only_for_postgresql() -> None:
    """Importing the store package and opening SQLite never loads asyncpg; a PostgreSQL URL does."""
    code = (
        "import sys\n"
        "from callback_server.store import open_store\n"
        "open_store('sqlite:///never-opened.db')\n"
        "before = 'asyncpg' in sys.modules\n"
        "open_store('postgresql://127.0.0.1:1/x')\n"
        "print(before, 'asyncpg' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["False", "True"]
