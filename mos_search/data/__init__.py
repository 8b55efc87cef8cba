"""Corpora: readers, the embedded Bible corpus, folders with a manifest, tokenizer, batches.

Inside, data flows readers (`parallel.py`, `bible.py`) -> tokenizer (`tokenizer.py`) -> encoded
splits (`encoded.py`) and the memory-mapped token store (`tokenized.py`) -> corpus folders
(`corpus.py`, `manifest.py`) -> batches (`batches.py`) and masked-LM text corpora (`text.py`).

May import: the core modules (`constants`, `errors`, `files`, `settings`) and `devices.text` (the
UTF-8 decoder); no torch model.
"""
