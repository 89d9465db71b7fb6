"""The providers: a registry; each provider a backend (its rules over the store and clock) and a
stateless face (auth, envelopes, error format, handlers over a backend)."""
