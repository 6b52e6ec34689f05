"""Decoding: the prefix trie of valid SIDs, batched beam search, and beams -> recommended items."""

from sidrec.decode.beam_search import beam_search, recommend
from sidrec.decode.trie import PrefixTrie

__all__ = ["PrefixTrie", "beam_search", "recommend"]
