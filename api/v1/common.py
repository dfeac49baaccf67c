"""Helpers shared by the routers: pagination over the services' id-ordered lists."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Query

T = TypeVar("T")
Limit = Annotated[int, Query(ge=1, le=1000, description="items per page")]
Cursor = Annotated[int | None, Query(ge=0, le=2**62, description="the `next_cursor` of the previous page")]


def paginate(items: Sequence[T], *, cursor: int | None, limit: int, out: Callable[[T], Any],
             key: Callable[[T], int] = lambda x: x.id) -> dict[str, Any]:  # type: ignore[attr-defined]
    """One page of `items` (ordered by id): those after `cursor`, at most `limit`."""
    after = [i for i in items if cursor is None or key(i) > cursor]
    page = after[:limit]
    more = len(after) > limit
    return {"items": [out(i) for i in page], "next_cursor": key(page[-1]) if more and page else None}

from fastapi import Path as PathParam  # noqa: E402

Id = Annotated[int, PathParam(ge=1, le=2_147_483_647, description="a record id")]
