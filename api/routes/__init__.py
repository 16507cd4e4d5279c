"""One router per resource; `api.main` mounts them: `/health` at the root (where health gates
look for it), everything else under the versioned prefix."""

from __future__ import annotations

import re

from fastapi import APIRouter

from api.routes import alerts, bins, collections, compliance, health, routes, sites

API_PREFIX = "/api/v1"

api_router = APIRouter(prefix=API_PREFIX)
api_router.include_router(sites.router)
api_router.include_router(bins.router)
api_router.include_router(collections.router)
api_router.include_router(compliance.router)
api_router.include_router(alerts.router)
api_router.include_router(routes.router)

health_router = health.router

API_PHOTO_PATHS = (
    re.sub(r"\{\w+\}", "[^/]+", API_PREFIX + routes.router.prefix + routes.PHOTO_PATH) + "$"
)
"""Where an API request body is a photo: the body cap there is the photo's (api/main.py)."""
