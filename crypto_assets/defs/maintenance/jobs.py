"""Job of the maintenance domain."""

from __future__ import annotations

import dagster as dg

from crypto_assets.defs.maintenance.assets import LAKE_MAINTENANCE

MAINTENANCE_JOB = "lake_maintenance_job"


def build_maintenance_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    return [dg.define_asset_job(MAINTENANCE_JOB, selection=[LAKE_MAINTENANCE],
                                description="Compact and vacuum every lake table.")]
