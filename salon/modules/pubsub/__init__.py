"""Publish-subscribe (XEP-0060): the pure service (``service.py``, ``config.py``), the
stanza translation (``protocol.py``), PEP interest bookkeeping (``interest.py``) and the
``pubsub`` module serving ``pubsub.<domain>`` (``component.py``). PEP is ``salon.modules.pep``."""

from salon.modules.pubsub.component import PubSub

__all__ = ["PubSub"]
