"""The one-machine stack: a local S3, the worker under RunPod's local API and the callback server.

`python -m stack` brings it up, runs the bundled sample through it and stops everything it started.
"""
