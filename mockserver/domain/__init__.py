"""The domain: the mock's rules without HTTP (clock, ids, lifecycles, faults, rate limits, seeding,
webhooks, variation) and the `Mock` that holds the providers' backends."""
