"""Inbound IO: JSON-RPC transport, subscriptions, backfill and reorg detection."""
