"""keeper: a liquidation keeper for on-chain lending protocols."""

__version__ = "0.1.0"
