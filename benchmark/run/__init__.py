"""Running: profiles, grids, the plan, the harness, executors, calibration, tuning and the driver."""
