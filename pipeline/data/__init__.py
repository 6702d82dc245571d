"""Corpora (synthetic, FSC, SLURP), features, tokenizer and class-incremental splits."""
