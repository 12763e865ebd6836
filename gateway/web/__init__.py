"""The gateway's web server: status page, JSON API, SSE, simulation API."""
