"""Airflow's own login for the plugin's routes: Airflow 3 leaves plugin FastAPI apps unprotected.

The dependency resolves the caller exactly as Airflow's REST API does (``get_user`` in
``airflow.api_fastapi.core_api.security``: an ``Authorization: Bearer`` JWT, else the UI's ``_token``
session cookie), then asks the auth manager whether that user may read DAG runs. No credential, or an
expired one, answers 401; an invalid token or a user without that permission, 403.
"""

from __future__ import annotations

from typing import Annotated, Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api import security
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials

HINT = ("log in to the Airflow UI first (the numa-lab pages use its session), or send an Airflow API token as "
        "'Authorization: Bearer <token>'")


async def airflow_user(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(security.bearer_scheme)] = None,
) -> Any:
    """The authenticated Airflow user allowed to read DAG runs; 401/403 with a message saying what to do."""
    try:
        user = await security.get_user(request, None, bearer)
    except HTTPException as exc:
        raise HTTPException(exc.status_code, f"{exc.detail}: {HINT}", headers=exc.headers) from None
    if not get_auth_manager().is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=None), user=user
    ):
        raise HTTPException(403, "Forbidden: this Airflow user may not read DAG runs, which the numa-lab pages show")
    return user


AirflowUser = Annotated[Any, Depends(airflow_user)]
