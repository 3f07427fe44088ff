"""Maintenance domain: nightly OPTIMIZE and VACUUM of every lake table, its job and schedule."""

import dagster as dg

from crypto_assets.defs.maintenance.assets import build_maintenance_assets
from crypto_assets.defs.maintenance.jobs import build_maintenance_jobs
from crypto_assets.defs.maintenance.schedules import build_maintenance_schedules
from crypto_lambda.config import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    """``settings`` is unused (the lake table list comes from the lake itself); the argument keeps every
    domain's ``build_defs`` alike."""
    return dg.Definitions(assets=build_maintenance_assets(), jobs=build_maintenance_jobs(),
                          schedules=build_maintenance_schedules())
