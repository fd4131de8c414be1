"""An Optuna storage shared by many tuning workers (``tune.storage``): checked and created once.

Several processes or Slurm jobs work on one Optuna study when each sweeps
``+experiment=tune_lr tune.storage=<url>`` with the same ``tune.study_name``: Optuna's
``RDBStorage`` gives each new trial the next number inside the database, so workers never
share a trial number, and TPE reads every worker's finished trials.

Two things stand in the way, and :func:`prepare_study_storage` removes both before the
sweeper opens the study:

- Optuna 2.10 (pinned by hydra-optuna-sweeper: ``optuna<3``) stamps its schema version with
  alembic on a connection it never commits; under SQLAlchemy 2 (mlflow 3's) that stamp is rolled
  back, and every later ``RDBStorage(url)`` fails with ``assert version is not None``
  (SQLAlchemy 2 support came in Optuna 3.1, optuna/optuna#4304). Here the stamp is written in a
  committed transaction; Optuna then finds its schema current and never stamps again.
- Workers that start at once race to create the tables: the first use is serialised by a file
  lock beside a SQLite file, and by an advisory lock on PostgreSQL.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lossbench.errors import LossbenchError, exit_on_user_error

SCHEMES = ("sqlite", "postgresql", "mysql")
_LOCK_KEY = 0x10557BE5C  # pg_advisory_lock key: "lossbench study storage"


def shown(url: str) -> str:
    """``url`` with its password masked, for messages and logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def check_storage_url(url: str, key: str = "tune.storage") -> None:
    """Refuse a storage that is not a database URL Optuna can open, naming the forms allowed."""
    from sqlalchemy.engine import make_url

    try:
        scheme = make_url(url).get_backend_name()
    except Exception:
        scheme = None
    if scheme not in SCHEMES:
        raise LossbenchError(
            f"{key}={url} is not an Optuna storage URL: it must be a database URL, "
            "sqlite:///<path>.db or postgresql://<user>:<password>@<host>/<db>. "
            f"Fix: set e.g. {key}=sqlite:///optuna.db"
        )
    if scheme == "sqlite":
        path = make_url(url).database
        if not path or path == ":memory:":
            raise LossbenchError(
                f"{key}={url} is a database only this process sees: workers share a file. "
                f"Fix: set e.g. {key}=sqlite:///optuna.db"
            )
        folder = Path(path).resolve().parent
        if not folder.is_dir():
            raise LossbenchError(
                f"{key}={url}: the folder {folder} does not exist. Fix: create it, or point "
                f"{key} at a file in an existing folder"
            )


def prepare_study_storage(url: str) -> None:
    """Create Optuna's tables and commit their schema stamp in ``url``, once, under a lock.

    A storage already prepared (by an earlier worker or a newer Optuna) is left as it is.
    Raises :class:`LossbenchError` when the database cannot be reached.
    """
    from filelock import FileLock
    from sqlalchemy.engine import make_url

    check_storage_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        with FileLock(f"{Path(parsed.database).resolve()}.lock", timeout=120):
            _prepare(url)
    else:
        _prepare(url)


def _prepare(url: str) -> None:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as conn:
            postgres = engine.dialect.name == "postgresql"
            if postgres:  # held by this connection: the other workers wait here
                conn.execute(sqlalchemy.text(f"SELECT pg_advisory_lock({_LOCK_KEY})"))
                conn.commit()
            try:
                _create(conn)
            finally:
                if postgres:
                    conn.execute(sqlalchemy.text(f"SELECT pg_advisory_unlock({_LOCK_KEY})"))
                    conn.commit()
        engine.dispose()
    except ModuleNotFoundError as err:  # the database's driver, e.g. psycopg2
        raise LossbenchError(
            f"the Optuna storage {shown(url)} needs the Python package {err.name!r}, which is "
            "not installed. Fix: pip install -e '.[server]' (PostgreSQL's driver)"
        ) from err
    except sqlalchemy.exc.OperationalError as err:
        first = str(err.orig or err).strip().splitlines()[0]
        raise LossbenchError(
            f"the Optuna storage {shown(url)} cannot be reached ({first}). Fix: start the "
            "database (deploy/postgres/up.sh for PostgreSQL on this machine), or correct "
            "tune.storage"
        ) from err


def _create(conn: Any) -> None:
    """What ``optuna.storages.RDBStorage`` does on first use (its tables, its version row, the
    alembic stamp of its schema's head), in one committed transaction; nothing if stamped."""
    import os

    import alembic.migration
    import alembic.script
    import optuna.storages._rdb.models as models
    import sqlalchemy
    from optuna.version import __version__

    if alembic.migration.MigrationContext.configure(conn).get_current_revision():
        conn.rollback()
        return
    conn.rollback()
    # optuna/storages/_rdb/alembic: the migrations Optuna checks the stamp against
    scripts = os.path.join(os.path.dirname(models.__file__), "alembic")
    with conn.begin():
        models.BaseModel.metadata.create_all(conn)
        info = models.VersionInfoModel.__table__
        if conn.execute(sqlalchemy.select(info)).first() is None:
            conn.execute(info.insert().values(version_info_id=1,
                                              schema_version=models.SCHEMA_VERSION,
                                              library_version=__version__))  # fmt: skip
        script = alembic.script.ScriptDirectory(scripts)
        alembic.migration.MigrationContext.configure(conn).stamp(script, script.get_current_head())


class StudyStorage(Callback):
    """Hydra callback: before a sweep whose sweeper has a ``storage`` (the Optuna sweeper's
    ``hydra.sweeper.storage``, set by ``tune.storage``), prepare that storage; a bad or
    unreachable storage is one message and exit 2 before any trial starts."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        url = config.hydra.sweeper.get("storage")
        if not url:
            return
        with exit_on_user_error("lossbench"):
            if not isinstance(url, str):
                raise LossbenchError(f"hydra.sweeper.storage={url} is not a database URL")
            prepare_study_storage(url)
            name = config.hydra.sweeper.get("study_name")
            print(f"lossbench: Optuna study {name!r} in {shown(url)}", file=sys.stderr)
