"""The contract between the RunPod worker and the callback server, imported by both and importing
neither (the standard library and pydantic only; tests/test_layout.py checks it):

- `status`: the job-status enum; `events`: the worker's webhook events;
- `job_state`: the one job-state document (worker result, events, API job, client webhook) and
  its error shape; `schema`: its JSON schema (the one module that imports pydantic);
- `errors`: the error tree with its stable codes; `envvars`: strict environment parsing;
- `webhook_signing`: Standard Webhooks signing and verifying; `netguard`: the address policy;
  `outbound`: the one HTTP client for URLs a request names (resolve once, check, pin, bound);
- `redact`: the log filter that keeps presigned URLs and tokens out of logs.
"""
