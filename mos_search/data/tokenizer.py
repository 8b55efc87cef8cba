"""The subword tokenizer (SentencePiece); numpy-free and torch-free so deployment can use it."""

from __future__ import annotations

from pathlib import Path

from mos_search.errors import DataError

MASK_PIECE = "<mask>"  # the masked-LM mask token of text corpora (id 4)


class Tokenizer:
    """A joint SentencePiece model with pad/unk/bos/eos = 0/1/2/3."""

    def __init__(self, model_path: str | Path) -> None:
        import sentencepiece as spm

        path = Path(model_path)
        if not path.is_file():
            raise DataError(f"tokenizer model not found: {path}")
        self.path = path
        try:
            self._sp = spm.SentencePieceProcessor(model_file=str(path))
        except (RuntimeError, OSError):  # SentencePiece says INTERNAL: could not parse ...
            raise DataError(
                f"{path} is not a SentencePiece model (truncated, damaged or another kind of "
                "file); it is written with its corpus "
                "(`mos-search data bible`, `data parallel` or `data text`) and copied into an "
                "exported model (`mos-search export`): rebuild the one it came from"
            ) from None
        self.pad_id, self.unk_id = self._sp.pad_id(), self._sp.unk_id()
        self.bos_id, self.eos_id = self._sp.bos_id(), self._sp.eos_id()
        mask = self._sp.piece_to_id(MASK_PIECE)
        self.mask_id: int | None = None if mask == self.unk_id else mask

    @property
    def vocab_size(self) -> int:
        """Number of subword ids."""
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Subword ids of `text` (no bos/eos)."""
        return self._sp.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Subword ids of many texts."""
        return self._sp.encode(texts)

    def decode(self, ids: list[int]) -> str:
        """Detokenised text of ids; special ids are dropped."""
        specials = (self.pad_id, self.bos_id, self.eos_id)
        return self._sp.decode([i for i in ids if i not in specials])
