"""`jobs`: a terminal client for a running server, over REST and WebSockets with an API token.

Needs no Django: `main.py` (commands and exit codes), `api.py` (REST calls and their errors),
`stream.py` (job and feed sockets, resumed with `after=` across drops), `views.py` (the live
progress bar, or one JSON line per event).
"""
