"""Building artifacts: project config, dependencies for a target platform, layout, reproducible zip."""
