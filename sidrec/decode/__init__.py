"""Decoding: the prefix trie of valid SIDs, batched beam search, and the Ranker (histories -> recommended items)."""

from sidrec.decode.beam_search import beam_search, recommend
from sidrec.decode.ranker import Ranker
from sidrec.decode.trie import PrefixTrie

__all__ = ["PrefixTrie", "Ranker", "beam_search", "recommend"]
