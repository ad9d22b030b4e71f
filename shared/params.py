"""The identifiers of the HTTP contract as path and query parameters, and their checks.

The OpenAPI document states each pattern, but the check is ours rather than FastAPI's, so
a bad id is answered with the contract's own code (`invalid_article_id`, …) and sentence.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from shared.events import (
    ARTICLE_ID_MESSAGE,
    ARTICLE_ID_PATTERN,
    USER_ID_MESSAGE,
    USER_ID_PATTERN,
    valid_article_id,
    valid_user_id,
)
from shared.http import ApiError

ArticleIdPath = Annotated[
    str,
    Path(
        description="The article: 1-128 characters of A-Z a-z 0-9 . _ : ~ -",
        json_schema_extra={"pattern": ARTICLE_ID_PATTERN},
    ),
]
UserIdPath = Annotated[
    str,
    Path(
        description="The reader: 1-64 characters of A-Z a-z 0-9 . _ ~ -",
        json_schema_extra={"pattern": USER_ID_PATTERN},
    ),
]
UserIdQuery = Annotated[
    str | None,
    Query(
        description="The reader (1-64 characters of A-Z a-z 0-9 . _ ~ -); adds `mine`.",
        json_schema_extra={"pattern": USER_ID_PATTERN},
    ),
]


def check_article_id(article_id: str) -> None:
    """422 `invalid_article_id` unless the id fits its pattern."""
    if not valid_article_id(article_id):
        raise ApiError(422, "invalid_article_id", ARTICLE_ID_MESSAGE)


def check_user_id(user_id: str | None) -> None:
    """422 `invalid_user_id` unless the id is absent or fits its pattern."""
    if user_id is not None and not valid_user_id(user_id):
        raise ApiError(422, "invalid_user_id", USER_ID_MESSAGE)
