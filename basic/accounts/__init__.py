"""Users and their API tokens, and sign-in throttling. Depends only on `basic.core`."""
