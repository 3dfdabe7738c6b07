"""The models: finding GGUF files, the llama-cpp-python engine a circuit runs, and planning
what fits in GPU memory."""
