"""Uniswap V2 seen from the keeper: where a pair lives and what it holds."""
