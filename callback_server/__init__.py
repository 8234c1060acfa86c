"""The webhook receiver and job status API (aiohttp). Imports no pipeline or GPU code."""
