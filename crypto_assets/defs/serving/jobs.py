"""Job of the serving domain: rebuild the merged view."""

from __future__ import annotations

import dagster as dg

from crypto_lambda.lake.tables import SERVING_DAILY

SERVING_JOB = "serving_job"


def build_serving_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    return [dg.define_asset_job(SERVING_JOB, selection=[SERVING_DAILY],
                                description="Rebuild the merged serving view for every symbol.")]
