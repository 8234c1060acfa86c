"""Where a job's picture comes from and how it becomes pixels.

`sources` reads base64, data URIs, https URLs (`fetch`, SSRF-guarded) and `s3://` objects into
bytes; `headers` sizes up a PNG, JPEG or WebP from its first bytes; `decode` turns the bytes into
an RGBA picture under a pixel-count cap.
"""
