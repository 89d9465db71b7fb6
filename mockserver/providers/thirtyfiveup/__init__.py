"""35up marketplace Returns API: one return per order, Basic auth, a 16-status lifecycle."""

PROVIDER = "35up"
