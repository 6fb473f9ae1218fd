"""What distributed runs add to the one codec (`floxide._codec`): its error, the backend keys.

Workers and orchestrators encode and decode with `floxide._codec.Codec`, made with
`PayloadError`, so a stored value that does not fit its declared type is reported as a
backend problem naming the field path. A fired join item is stored without its input: it
names the collection its values were appended to (`collection_key`), and the worker that
leases it reads them then, so a step's commit never rewrites what a join collected so far.
"""

from __future__ import annotations

from collections.abc import Hashable

from floxide._codec import Codec
from floxide._errors import PayloadError
from floxide._graph import Graph
from floxide._step import ROOT_ID, derived_id

__all__ = ["ROOT_ID", "collection_key", "item_id", "payload_codec"]

item_id = derived_id
"""The id of the k-th item made by executing a parent: the same on every re-run."""


def payload_codec(graph: Graph) -> Codec:
    """A codec for runs of `graph` in a backend (its failures raise `PayloadError`)."""
    return Codec(graph, PayloadError)


def collection_key(scope_id: Hashable, join: str) -> str:
    """The backend key of the values join `join` collects in scope `scope_id`."""
    return f"{scope_id}|{join}"
