"""Fast non-LLM coders: the floor every LLM must beat, and a fallback that runs anywhere."""
