"""protocols/aave_v3."""
