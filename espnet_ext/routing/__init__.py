"""espnet_ext.routing: LID posteriors -> adapter weights and a language token (`routers`), and the
registry of `--routing` choices (`ROUTINGS`) that the decode CLI and the recipe read."""
