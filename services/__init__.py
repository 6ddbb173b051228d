"""The services, one thin entrypoint each: they name a stage, its settings and its topics.

Installed as `facestream.services`; run as `facestream <service>` or `facestream-<service>`.
"""
