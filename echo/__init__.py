"""Echo's logic, with no Ray in it: everything here runs and is tested as plain Python.

Split by concern, each sub-package above the ones it uses (held by import-linter, see
pyproject.toml):

    http     the FastAPI app: routes, request bodies, error shapes, event streams
    brain    answering a prompt: who asks, which route, the circuits, merging, identity, projects
    llm      the models: a GGUF engine (llama-cpp-python) and GPU memory planning
    memory   the owner's memory: the files, parsing, replay, indexes and search
    ops      operating Echo: the doctor's checks and the deployment package
    config   the typed configuration every layer reads
"""
