"""Training data: tokenizers, the `prepare` dataset build, legal move sets. No torch."""
