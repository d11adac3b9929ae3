"""The studies layer: many runs. Profiles and grids, the papermill sweep runner and its executors, notebook helpers,
collecting records into pandas, figures, and the `veralab` command line. Builds on veralab.experiment and core."""
