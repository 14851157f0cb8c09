"""The socket layer: consumers (one module per route), the channel layer, chat and its history, the
Daphne server, and socket auth, limits and origin checks. Never imports `basic.api` or `basic.ops`."""
