"""The plugin's app behind a real Airflow auth manager (simple auth manager, real JWTs), over an outputs
folder with one DAG run's folder, an all-runs report, a loaded database, and things that must not be served."""

from __future__ import annotations

from pathlib import Path

import pytest
from numa_ops import db as numa_db
from numa_ops import results
from numa_ops.run_folder import make as folder_name

from tests.numa_ops.records import record

DAG_ID, RUN_ID = "phase1_framework_validation", "manual__2026-11-28T06:00:00+00:00"
SECRET = "jwt_secret = not-for-you"


@pytest.fixture(scope="session")
def auth_manager():
    """Airflow's configured auth manager, with the one table it reads when checking a token."""
    from airflow import settings
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.models.revoked_token import RevokedToken

    RevokedToken.__table__.create(settings.engine, checkfirst=True)
    return create_auth_manager()


@pytest.fixture
def tokens(auth_manager) -> dict[str, str]:
    """JWTs as Airflow issues them now (signed with the secret the validator uses): a viewer, a user without a
    role, and one that has expired."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    BaseAuthManager._get_token_signer.cache_clear()  # signer and validator from the same secret, whatever
    BaseAuthManager._get_token_validator.cache_clear()  # secret an earlier test configured
    return {
        "viewer": auth_manager.generate_jwt(SimpleAuthManagerUser(username="viewer", role="viewer")),
        "no_role": auth_manager.generate_jwt(SimpleAuthManagerUser(username="nobody", role=None)),
        "expired": auth_manager.generate_jwt(SimpleAuthManagerUser(username="old", role="viewer"),
                                             expiration_time_in_seconds=-60),
    }


@pytest.fixture
def outputs(tmp_path: Path, outputs_dir: Path) -> Path:
    """A run folder of DAG_ID/RUN_ID with its report, the all-runs report, the database, and, outside the
    outputs folder, an ``airflow.cfg`` that a traversal would reach, with symlinks to it from inside."""
    (tmp_path / "airflow.cfg").write_text(SECRET)
    (tmp_path / "secret.csv").write_text(f"a\n{SECRET}\n")
    from datetime import UTC, datetime

    name = folder_name("phase1", datetime(2026, 11, 28, 6, tzinfo=UTC), token=f"{DAG_ID}|{RUN_ID}")
    folder = outputs_dir / name
    results.write_json_atomic(folder / "runs" / f"{name}.a.json", record(f"{name}.a", folder=name))
    results.write_json_atomic(folder / "plan.json", {"phase": DAG_ID, "params": {}, "runs": 1, "lanes": [],
                                                     "created_at": "2026-11-28T06:00:01+00:00"})
    results.write_json_atomic(folder / "experiment_summary.json",
                              {"planned_runs": 1, "successful_runs": 1, "failed_runs": 0})
    results.write_json_atomic(folder / "gate.json", {"passed": True, "summary": "gate passed: 0/1 runs failed"})
    (folder / "report").mkdir()
    (folder / "report" / "index.html").write_text("<html><body><h1>run report</h1></body></html>")
    (folder / "report" / "throughput.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (outputs_dir / "report").mkdir()
    (outputs_dir / "report" / "index.html").write_text("<html><body>all runs</body></html>")
    (outputs_dir / "escape.html").symlink_to(tmp_path / "airflow.cfg")
    (outputs_dir / "up").symlink_to(tmp_path)
    numa_db.load_runs([folder], numa_db.db_path(outputs_dir))
    return outputs_dir


@pytest.fixture
def auth_client(outputs, auth_manager):
    """A TestClient of an app that mounts the plugin's app where Airflow does (``/numa-lab``)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from numa_ops.ui.app import create_app

    outer = FastAPI()
    outer.mount("/numa-lab", create_app())
    return TestClient(outer)
