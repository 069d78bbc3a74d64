"""Run a built artifact locally under its target's own contract, without Docker.

An emulator starts the unpacked artifact the way the platform would (its interpreter,
environment, entry point and limits) and puts a front on 127.0.0.1 that forwards requests
the way the platform's HTTP entry does, so what works here is what was uploaded.
"""
