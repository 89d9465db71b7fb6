"""3plship Returns API: bearer API keys, the success/error envelopes, refunds in business days."""

PROVIDER = "3plship"
