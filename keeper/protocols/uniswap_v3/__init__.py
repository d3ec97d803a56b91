"""Uniswap V3 seen from the keeper: where a pool lives and the state a swap through it reads."""
