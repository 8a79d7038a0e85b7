"""Outbound webhooks: the dispatcher that POSTs reward and attribution changes to the shop's endpoints, signed
as Standard Webhooks says, retried, in order per reward; dead deliveries kept and replayed (docs/webhooks.md)."""
