"""Built-in sweep specs (TOML), listed by `cmasim sweeps`."""
