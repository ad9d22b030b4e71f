"""The identifiers of the HTTP contract as path and query parameters, and their checks.

The OpenAPI document states each pattern, but the check is ours rather than FastAPI's, so
a bad id is answered with the contract's own code (`invalid_article_id`, …) and sentence.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Path, Query

from shared.events import ARTICLE_ID_MESSAGE, ARTICLE_ID_PATTERN, valid_article_id
from shared.http import ApiError

ArticleIdPath = Annotated[
    str,
    Path(
        description="The article: 1-128 characters of A-Z a-z 0-9 . _ : ~ -",
        json_schema_extra={"pattern": ARTICLE_ID_PATTERN},
    ),
]
_ID: Final = ARTICLE_ID_PATTERN.removeprefix("^").removesuffix("$")
# What the bulk calls take: article ids, comma-separated; empty items are ignored, but at
# least one id is needed. (At most 100 distinct ids is checked by the service.)
ARTICLE_IDS_PATTERN: Final = f"^,*{_ID}(,+{_ID})*,*$"
ArticleIdsQuery = Annotated[
    str,
    Query(
        description="Up to 100 article ids, comma-separated; duplicates and empty items ignored.",
        json_schema_extra={"pattern": ARTICLE_IDS_PATTERN},
    ),
]
ArticleIdQuery = Annotated[
    str,
    Query(
        description="An article: 1-128 characters of A-Z a-z 0-9 . _ : ~ -",
        json_schema_extra={"pattern": ARTICLE_ID_PATTERN},
    ),
]


def check_article_id(article_id: str) -> None:
    """422 `invalid_article_id` unless the id fits its pattern."""
    if not valid_article_id(article_id):
        raise ApiError(422, "invalid_article_id", ARTICLE_ID_MESSAGE)
