"""Language models: loading, prompt format, training, constrained decoding, backends."""
