"""Dagster helpers every domain of ``crypto_assets.defs`` shares and none owns: the resources (one of them
carries the settings), the partitions and their run tags, run bookkeeping. Nothing here names an asset, a
check or a job: those belong to the domain that defines them."""
