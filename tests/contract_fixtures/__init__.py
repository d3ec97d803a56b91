"""Test-only contracts (sol/) and the Uniswap V3 pools the liquidator tests trade on."""
