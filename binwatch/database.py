"""Creating the registry database: every domain's tables, and the migrations that make them.

Each domain owns its tables (devices/models.py the registry, collection/models.py, alerts/models.py,
security/models.py), all on one `Base`; only here, in the launch layer, are they gathered, in
`METADATA`, for the migrations and their test. The schema belongs to the Alembic migrations in `binwatch/migrations`, run from code rather than
from an `alembic.ini`, so the CLI, the tests and a fresh deployment all reach the same schema
from any working directory. To write the next migration, autogenerate it against a database at
head and clean it up by hand::

    with make_engine(url).connect() as connection:
        command.revision(alembic_config(connection), message="...", autogenerate=True)
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from pydantic import SecretStr
from sqlalchemy import Connection, MetaData

from alerts import models as alerts_models
from collection import models as collection_models
from core.sql import make_engine, require_registry, sqlite_file
from devices import models as registry_models
from security import models as security_models

DOMAIN_MODELS = (registry_models, collection_models, alerts_models, security_models)
METADATA: MetaData = registry_models.Base.metadata
"""Every table: the domains' model modules above put theirs on the registry's `Base`."""

MIGRATIONS = "binwatch:migrations"  # a package path, so it resolves wherever binwatch is installed


def alembic_config(connection: Connection) -> Config:
    """An Alembic configuration that migrates over `connection` (see `migrations/env.py`)."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    return config


def migrate(database_url: str | SecretStr, *, create: bool = True) -> None:
    """Bring the registry at `database_url` to the newest schema; harmless when it is there.

    With `create` a missing SQLite file is made, its folder first: the default URL points into
    `var/`, which a fresh checkout does not have. Without it (every command but `binwatch db
    migrate` and `binwatch fleet import`) a missing file is refused (`require_registry`): a
    typo in the URL made a new, empty registry that the command then read as "no keys".
    """
    if not create:
        require_registry(database_url)
    path = sqlite_file(database_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    # No statement timeout: a schema change over a large table may take longer than any
    # service's statement should, and it runs once, from an operator or the migrate job.
    engine = make_engine(database_url, statement_timeout=0)
    try:
        with engine.connect() as connection:
            command.upgrade(alembic_config(connection), "head")
    finally:
        engine.dispose()
