"""Orphans of a rollback: transactions of ours given up because the chain went back below their
nonce, which the node may still hold behind the gap (and count in its pending nonce)."""

from __future__ import annotations

from keeper.domain.fees import GWEI, Fees
from keeper.exec.nonce import NonceManager
from tests.unit.test_rollback import NonceNode

ACCOUNT = "0x" + "aa" * 20
ORPHAN_FEES = Fees(max_fee_per_gas=5 * GWEI, max_priority_fee_per_gas=2 * GWEI)


async def test_a_pending_count_our_orphans_explain_does_not_move_the_counter_past_the_gap() -> None:
    # A node restored from an older state: the chain is back at 18, and the node still holds
    # our transaction at 50 and counts it (anvil's pending nonce is its pool's highest + 1).
    node = NonceNode(18, pending=51)
    nonces = NonceManager(node, ACCOUNT)
    nonces.orphaned(50, ORPHAN_FEES)
    nonces.rolled_back()
    async with nonces.claim() as lease:  # the counter read from the node
        assert lease.nonce == 18
    async with nonces.claim(18, 51) as lease:  # the counts read beside a simulation
        assert lease.nonce == 18 and lease.outbid is None
        lease.mark_sent()
    async with nonces.claim(18, 51) as lease:  # 18 is ours in flight: the next one
        assert lease.nonce == 19


async def test_without_orphans_a_pending_count_above_ours_is_taken() -> None:
    # Transactions of another process on this key: ours go after them, as before.
    nonces = NonceManager(NonceNode(18, pending=21), ACCOUNT)
    async with nonces.claim(18, 21) as lease:
        assert lease.nonce == 21
    nonces.orphaned(16, ORPHAN_FEES)  # below the chain's nonce: the chain went past it
    async with nonces.claim(18, 21) as lease:
        assert lease.nonce == 21 and lease.outbid is None


async def test_a_claim_at_an_orphans_nonce_carries_its_fees_until_a_send_replaces_it() -> None:
    node = NonceNode(18, pending=20)
    nonces = NonceManager(node, ACCOUNT)
    nonces.orphaned(19, ORPHAN_FEES)
    async with nonces.claim(18, 20) as first:
        assert first.nonce == 18 and first.outbid is None
        first.mark_sent()
    async with nonces.claim(18, 20) as lease:
        assert lease.nonce == 19 and lease.outbid == ORPHAN_FEES
        lease.mark_sent()
    # Refused (the node still holds the orphan): the next send at 19 must outbid it again.
    assert await nonces.refused(lease) is False
    async with nonces.claim(18, 20) as again:
        assert again.nonce == 19 and again.outbid == ORPHAN_FEES
        again.mark_sent()
    # Replaced by ours: a later claim at 19 (ours lost by the node) owes the orphan nothing.
    assert nonces.release(again) is False
    node.pending = 19
    async with nonces.claim(18, 19) as after:
        assert after.nonce == 19 and after.outbid is None
