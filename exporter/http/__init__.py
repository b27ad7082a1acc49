"""The HTTP side: the WSGI app and server (server.py) and the exporter-toolkit
web config (webconfig.py)."""
