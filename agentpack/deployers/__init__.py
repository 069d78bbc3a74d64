"""Deployers: put an app (or a built artifact) somewhere it serves requests."""
