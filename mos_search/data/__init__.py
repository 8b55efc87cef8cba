"""Corpora: parallel-text readers, the embedded Bible corpus, tokenizer and batches."""
