"""XEP-0045 Multi-User Chat: a chat service at ``conference.<domain>``.

* ``room`` — one room, sans-IO: occupants, roles and affiliations, what each request sends;
* ``rules`` — who may do what, as pure functions;
* ``config`` — the room configuration and its data forms;
* ``history`` — the discussion history replayed on join;
* ``nick`` — PRECIS nicknames;
* ``service`` — the module: routing, storage, the room lifecycle.
"""

from salon.modules.muc.service import Muc, MucOptions

__all__ = ["Muc", "MucOptions"]
