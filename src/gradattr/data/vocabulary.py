"""A word vocabulary: token strings <-> integer ids, with padding and unknown-word ids."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"


@dataclass(frozen=True)
class Vocabulary:
    """An ordered token list; a token's position is its id.

    Id 0 is always ``"<pad>"`` and id 1 ``"<unk>"`` (any token not in the vocabulary). Build one
    from training texts only with :meth:`build`, so the test split cannot leak into it.
    """

    tokens: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    pad_id = 0
    unk_id = 1

    def __post_init__(self) -> None:
        if self.tokens[:2] != (PAD_TOKEN, UNK_TOKEN):
            raise ValueError(f"a vocabulary must start with {PAD_TOKEN!r}, {UNK_TOKEN!r}; got {self.tokens[:2]}")
        index = {token: i for i, token in enumerate(self.tokens)}
        if len(index) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")
        object.__setattr__(self, "_index", index)

    @classmethod
    def build(cls, tokenized: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = None) -> Vocabulary:
        """Vocabulary of the tokens seen at least ``min_freq`` times, most frequent first.

        Ties in frequency are broken alphabetically so the result is deterministic.
        ``max_size`` caps the total size, counting ``<pad>`` and ``<unk>``.
        """
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        if max_size is not None and max_size < 2:
            raise ValueError(f"max_size must leave room for <pad> and <unk>, got {max_size}")
        counts: Counter[str] = Counter()
        for tokens in tokenized:
            counts.update(tokens)
        counts.pop(PAD_TOKEN, None)
        counts.pop(UNK_TOKEN, None)
        ranked = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max_size - 2]
        return cls((PAD_TOKEN, UNK_TOKEN, *ranked))

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def id_of(self, token: str) -> int:
        """The id of ``token``, or :attr:`unk_id` when it is not in the vocabulary."""
        return self._index.get(token, self.unk_id)

    def encode(self, tokens: Sequence[str], max_len: int) -> list[int]:
        """Ids of ``tokens``, left-padded with :attr:`pad_id` to exactly ``max_len``.

        A longer sequence keeps its last ``max_len`` tokens (as Keras' ``pad_sequences`` does by
        default), so the end of a text, where reviews tend to sum up, is what a recurrent model
        reads last.
        """
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        ids = [self.id_of(t) for t in tokens][-max_len:]
        return [self.pad_id] * (max_len - len(ids)) + ids

    def decode(self, ids: Iterable[int], skip_padding: bool = True) -> list[str]:
        """Token strings of ``ids`` (a list or a 1-D tensor), dropping ``<pad>`` unless asked not to."""
        return [self.tokens[int(i)] for i in ids if not (skip_padding and int(i) == self.pad_id)]
