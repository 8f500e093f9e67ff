"""The search attributes of the contract, all Keyword, so the UI can filter by them."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

APP = SearchAttributeKey.for_keyword("StagelineApp")
ENVIRONMENT = SearchAttributeKey.for_keyword("StagelineEnvironment")
VERSION = SearchAttributeKey.for_keyword("StagelineVersion")
STATUS = SearchAttributeKey.for_keyword("StagelineStatus")
ALL = (APP, ENVIRONMENT, VERSION, STATUS)


def initial(app: str, environment: str, version: str | None, status: str) -> TypedSearchAttributes:
    pairs = [
        SearchAttributePair(APP, app),
        SearchAttributePair(ENVIRONMENT, environment),
        SearchAttributePair(STATUS, status),
    ]
    if version:
        pairs.append(SearchAttributePair(VERSION, version))
    return TypedSearchAttributes(pairs)
