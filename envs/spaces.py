"""``InstructionText``: a Gymnasium ``Text`` space whose strings survive ``AsyncVectorEnv``'s shared memory.

Gymnasium (1.x) gives ``Text`` a shared-memory buffer of character indices: the
workers write each new instruction into it, but the parent process decodes that
buffer into a tuple of strings only once, when the vector env is built (while the
buffer is still zeros). Every later ``reset``/``step`` then returns the first
character of the charset repeated ``max_length`` times ("aaaa...") unless
``shared_memory=False`` is passed.

``InstructionText`` is a plain ``Text`` (same ``contains``, ``sample``,
``flatten``, equality) plus one registration: for this space,
``read_from_shared_memory`` returns a ``SharedTextBatch``, a read-only sequence
that decodes the shared buffer every time it is read. ``AsyncVectorEnv`` returns
``deepcopy(observations)`` by default, and a ``SharedTextBatch`` deep-copies to a
tuple of the current strings, so ``obs["instruction"]`` is the same tuple of str
as ``SyncVectorEnv`` returns. With ``copy=False`` the batch stays live, like the
shared numpy arrays of the image keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import read_from_shared_memory


class InstructionText(spaces.Text):
    """``gymnasium.spaces.Text`` that ``AsyncVectorEnv(shared_memory=True)`` reads correctly."""


class SharedTextBatch(Sequence):
    """The strings of ``n`` envs held in a shared int32 buffer of character indices (read live)."""

    def __init__(self, space: spaces.Text, shared_memory, n: int) -> None:
        self._space, self._memory, self._n = space, shared_memory, int(n)

    def _decode(self) -> tuple[str, ...]:
        data = np.frombuffer(self._memory.get_obj(), dtype=np.int32).reshape(self._n, self._space.max_length)
        chars, size = self._space.character_list, len(self._space.character_set)
        # index == len(charset) is Gymnasium's padding value (flatten of a shorter string)
        return tuple("".join(chars[v] for v in row if v < size) for row in data)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        return self._decode()[i]

    def __iter__(self):
        return iter(self._decode())

    def __eq__(self, other) -> bool:
        if isinstance(other, SharedTextBatch):
            other = other._decode()
        return isinstance(other, (tuple, list)) and self._decode() == tuple(other)

    __hash__ = None  # mutable view

    def __repr__(self) -> str:
        return f"SharedTextBatch({self._decode()!r})"

    def __deepcopy__(self, memo) -> tuple[str, ...]:
        return self._decode()

    def __copy__(self) -> tuple[str, ...]:
        return self._decode()

    def __reduce__(self):  # pickling sends the strings, not the shared buffer
        return (tuple, (self._decode(),))


@read_from_shared_memory.register(InstructionText)
def _read_instruction_text(space: InstructionText, shared_memory, n: int = 1) -> SharedTextBatch:
    return SharedTextBatch(space, shared_memory, n)
