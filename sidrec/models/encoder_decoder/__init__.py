"""The encoder-decoder SID generator (GRID / TIGER default, ``model.arch=encoder_decoder``)."""

from sidrec.models.encoder_decoder.network import EncoderDecoder, EncoderDecoderCache

__all__ = ["EncoderDecoder", "EncoderDecoderCache"]
