"""The batch layer's computations (what the Dagster batch assets run): raw minutes into the lake
(:mod:`.raw`), daily bars, 1d history and the complete series (:mod:`.daily`), realized variance
(:mod:`.volatility`), each writing one commit per run rectangle (:mod:`.rect`)."""
