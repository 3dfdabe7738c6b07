"""HTTP: the FastAPI app Serve mounts (Echo's /api and the OpenAI-compatible /v1), request
bodies, error responses in both shapes and server-sent events. No answering logic: every
route calls the brain."""
