"""Running a scenario: preparing the model and data, planning units, executing them locally or on Dask, storing them for resume."""
