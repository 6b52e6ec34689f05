"""The decoder-only SID generator (``model.arch=decoder_only``)."""

from sidrec.models.decoder_only.network import DecoderOnly, DecoderOnlyCache

__all__ = ["DecoderOnly", "DecoderOnlyCache"]
