"""pydantic errors become one line: field path, then our own message."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError, field_validator, model_validator

from models.errors import describe, error_text


class Inner(BaseModel):
    port: int


class Outer(BaseModel):
    name: str
    inner: Inner

    @field_validator("name")
    @classmethod
    def lower(cls, value: str) -> str:
        if value != value.lower():
            raise ValueError("use lower case")
        return value

    @model_validator(mode="after")
    def whole(self) -> Outer:
        if self.name == "none":
            raise ValueError("'none' is reserved")
        return self


def failure(data: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Outer.model_validate(data)
    return caught.value


def test_each_error_is_named_by_its_path_without_pydantics_prefix() -> None:
    exc = failure({"name": "Web", "inner": {"port": "x"}})
    assert describe(exc) == (
        "name: use lower case; inner.port: Input should be a valid integer, unable to parse "
        "string as an integer"
    )
    assert error_text(exc.errors()[0]) == "use lower case"


def test_an_error_about_the_whole_value_is_bare_or_named_as_asked() -> None:
    exc = failure({"name": "none", "inner": {"port": 1}})
    assert describe(exc) == "'none' is reserved"
    assert describe(exc, whole="input") == "input: 'none' is reserved"
