"""The item-level semantic-ID model (``model.arch=item_sid``): network.py holds the network, its
config and its training objective (``ItemSID.loss``); it ranks the whole catalog exactly
(``ItemSID.user_states`` + ``ItemSID.scores``), which ``sidrec.decode.Ranker`` uses for every model
that has ``ranks_catalog = True``."""

from sidrec.models.item_sid.network import HEADS, ItemSID, ItemSIDConfig

__all__ = ["HEADS", "ItemSID", "ItemSIDConfig"]
