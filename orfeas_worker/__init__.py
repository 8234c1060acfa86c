"""The RunPod serverless worker: one job from RunPod's input to its result (`job`), the input's
worker-only fields (`job_input`), and the job's signed webhooks (`webhooks`).

`handler.py` is its entry point; it uses the pipeline library (`orfeas`) and the wire contract
(`orfeas_contract`), and is the only package that imports `runpod` (through handler.py).
"""
