"""Secret masking in captured output: every spelling stageline produces, before any cut.

Unit tests of `mask` and `StreamMasker`, hypothesis properties for the streaming masker
(any chunking gives the same result as masking the whole text, and no secret survives), and
the real step executor on a real subprocess printing 1.5 MiB.
"""

from __future__ import annotations

import base64
import json
import sys
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activities.masking import StreamMasker, mask, spellings
from activities.step_http import check_http
from activities.step_run import MAX_CAPTURE, run_process
from models.pipeline import Step
from models.resolution import ResolvedConfiguration, ResolvedSecret, ResolvedVariable, StepContext
from tests.http_recorder import recorder
from tests.properties.hostile import examples
from vault.secret_value import MASK, SecretValue


def property_settings(max_examples: int) -> settings:
    """As tests/properties/conftest.py: the same examples on every run, none kept between."""
    return settings(
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        max_examples=examples(max_examples),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


LONG_SECRET = "".join(f"{i:04x}" for i in range(100))[::-1]  # 400 characters, no repeats of 8


def fragments(secret: str, size: int = 6) -> set[str]:
    """Every piece of `size` characters of a secret (all of it, when shorter)."""
    if len(secret) <= size:
        return {secret}
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def leaked(text: str, secret: str, size: int = 6) -> list[str]:
    return sorted(f for f in fragments(secret, size) if f in text)


def streamed(text: str, secrets: list[str], cuts: list[int], max_pending: int = 1 << 30) -> str:
    masker = StreamMasker(secrets, max_pending=max_pending)
    out, at = [], 0
    for cut in sorted(set(cuts)):
        out.append(masker.feed(text[at:cut]))
        at = cut
    out.append(masker.feed(text[at:]))
    out.append(masker.finish())
    return "".join(out)


# -- every spelling ---------------------------------------------------------------------


def test_every_spelling_stageline_produces_is_masked() -> None:
    secret = 'pa"ss\\wörd/+ &=?'
    forms = {
        "as is": secret,
        "JSON body (httpx)": json.dumps(secret, ensure_ascii=False)[1:-1],
        "JSON, ASCII": json.dumps(secret)[1:-1],
        "URL-encoded": quote(secret, safe=""),
        "URL path": quote(secret),
        "form-encoded": quote_plus(secret),
        "basic auth": base64.b64encode(secret.encode()).decode(),
    }
    for what, form in forms.items():
        assert form in spellings(secret), what
        assert mask(f"<{form}>", [secret]) == f"<{MASK}>", what
    assert mask(json.dumps({"token": secret}), [secret]) == f'{{"token": "{MASK}"}}'
    assert mask(f"Authorization: Bearer {secret}", [secret]) == f"Authorization: Bearer {MASK}"


def test_each_line_of_a_multi_line_secret_is_masked_but_not_its_short_lines() -> None:
    secret = "-----BEGIN KEY-----\nMIIEvQIBADANBgkq\n}\n-----END KEY-----\n"
    out = mask("line MIIEvQIBADANBgkq and } and -----END KEY-----", [secret])
    assert out == f"line {MASK} and }} and {MASK}"
    assert mask(f"all: {secret}", [secret]) == f"all: {MASK}"


def test_a_short_secret_is_masked_whatever_its_length() -> None:
    assert mask("key=Q7 end", ["Q7"]) == f"key={MASK} end"
    assert mask("x=7", ["7"]) == f"x={MASK}"


def test_overlapping_and_touching_secrets_leave_nothing_between_them() -> None:
    # Replacing one needle after the other would leave "ijkl" of the second secret.
    assert mask("<abcdefghijkl>", ["abcdefgh", "efghijkl"]) == f"<{MASK}>"
    assert mask("<secret-1secret-1>", ["secret-1"]) == f"<{MASK}>"
    assert mask("<aaaaaaaaaaa>", ["aaaaaaaa"]) == f"<{MASK}>"


def test_masked_text_is_not_masked_into_something_else() -> None:
    # A secret made of the mask's own characters: one pass, so the result is stable.
    assert mask("a*b", ["*"]) == f"a{MASK}b"
    assert mask(mask("a*b", ["*"]), ["*"]) == f"a{MASK}b"


def test_a_secret_split_across_pieces_is_masked_whole_and_never_given_out_in_part() -> None:
    masker = StreamMasker([LONG_SECRET])
    text = f"before {LONG_SECRET} after"
    given_out = ""
    for i in range(0, len(text), 7):
        given_out += masker.feed(text[i : i + 7])
        assert leaked(given_out, LONG_SECRET, 4) == [], i
    assert given_out + masker.finish() == f"before {MASK} after"


def test_touching_secrets_split_across_pieces_give_one_mask_as_a_whole_text_does() -> None:
    assert streamed("abcdabcd", ["abcd"], [7]) == MASK == mask("abcdabcd", ["abcd"])


def test_a_run_of_touching_secrets_longer_than_the_hold_is_still_masked() -> None:
    text = "x" + "abcdefgh" * 500 + "y"
    out = streamed(text, ["abcdefgh"], list(range(0, len(text), 13)), max_pending=64)
    assert set(out) <= {"x", "y", "*"}, out[:80]
    assert out.startswith("x*") and out.endswith("*y")


# -- properties of the streaming masker -------------------------------------------------

SECRET_ALPHABET = 'abcdef"\\%/+ =é'
secrets_st = st.lists(st.text(SECRET_ALPHABET, min_size=1, max_size=12), min_size=1, max_size=3)


@st.composite
def text_with_secrets(draw: st.DrawFn, filler: str) -> tuple[list[str], str]:
    """Secrets, and a text of filler and occurrences of them (in any spelling), side by side
    or overlapping nothing in particular."""
    secrets = draw(secrets_st)
    pieces = draw(
        st.lists(
            st.one_of(
                st.text(filler, max_size=20),
                st.sampled_from(secrets).flatmap(lambda s: st.sampled_from(sorted(spellings(s)))),
            ),
            max_size=20,
        )
    )
    return secrets, "".join(pieces)


def chunkings(text_len: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, text_len), max_size=12)


@property_settings(300)
@given(st.data())
def test_streaming_any_chunking_equals_masking_the_whole_text(data: st.DataObject) -> None:
    # Filler from the secrets' own alphabet: partial secrets, near misses, overlaps.
    secrets, text = data.draw(text_with_secrets(SECRET_ALPHABET + "xy\n"))
    cuts = data.draw(chunkings(len(text)))
    assert streamed(text, secrets, cuts) == mask(text, secrets)


@property_settings(300)
@given(st.data())
def test_no_character_of_a_secret_survives_any_chunking_or_forced_cut(
    data: st.DataObject,
) -> None:
    # Filler that shares no character with any spelling of any secret: whatever of the
    # secrets' characters is left in the output leaked.
    secrets, text = data.draw(text_with_secrets("xyz\n"))
    cuts = data.draw(chunkings(len(text)))
    max_pending = data.draw(st.sampled_from([1, 8, 40, 1 << 30]))
    out = streamed(text, secrets, cuts, max_pending)
    assert set(out) <= set("xyz\n*"), (secrets, text, out)
    assert (MASK in out) == any(n in text for s in secrets for n in spellings(s))


@property_settings(200)
@given(secrets_st, st.text(SECRET_ALPHABET + "xy*\n", max_size=200))
def test_masking_leaves_no_spelling_of_a_secret(secrets: list[str], text: str) -> None:
    out = mask(text, secrets)
    for secret in secrets:
        for form in spellings(secret):
            # Between the masks (no spelling contains NUL), nothing of it is left.
            assert form not in out.replace(MASK, "\x00"), (form, text, out)


def covered_runs_masked(text: str, secrets: list[str]) -> str:
    """The reference: mark every character of every occurrence, one by one, then mask each
    run of marked characters."""
    marked = [False] * len(text)
    for secret in secrets:
        for form in spellings(secret):
            for i in range(len(text)):
                if text.startswith(form, i):
                    marked[i : i + len(form)] = [True] * len(form)
    out, i = [], 0
    while i < len(text):
        if marked[i]:
            while i < len(text) and marked[i]:
                i += 1
            out.append(MASK)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@property_settings(300)
@given(st.data())
def test_masking_masks_exactly_every_character_of_every_occurrence(data: st.DataObject) -> None:
    secrets, text = data.draw(text_with_secrets(SECRET_ALPHABET + "xy\n"))
    assert mask(text, secrets) == covered_runs_masked(text, secrets)


# -- the step executor, on a real subprocess ---------------------------------------------

# 1.5 MiB: filler, then secrets side by side around where a 1 MiB cap of the raw output
# would start (and across the 64 KiB reads), then 1 MiB less a little of filler; written in
# odd-sized pieces so that reads split secrets anywhere.
PRINT_MUCH = """
import os, sys
secret = os.environ["SECRET"]
line = "filler line of ordinary output, nothing secret in it at all.\\n"
def filler(n):
    return (line * (n // len(line) + 1))[:n]
dense = (secret + "|") * 500
total = 3 * 1024 * 1024 // 2
head = total // 3 - len(dense) // 2
text = filler(head) + dense + filler(total - head - len(dense) - 4) + "END\\n"
out = sys.stdout.buffer
for i in range(0, len(text), 4093):
    out.write(text[i : i + 4093].encode())
    out.flush()
"""


async def test_a_step_printing_more_than_the_cap_shows_no_part_of_a_secret() -> None:
    ran = await run_process(
        [sys.executable, "-c", PRINT_MUCH],
        {"SECRET": LONG_SECRET, "PATH": "/usr/bin:/bin"},
        60.0,
        lambda: None,
        secrets=[LONG_SECRET],
    )
    assert ran.exit_code == 0, ran.output[-500:]
    assert ran.output.endswith("END\n")
    assert len(ran.output) <= MAX_CAPTURE
    assert leaked(ran.output, LONG_SECRET) == []
    assert f"|{MASK}|" in ran.output


async def test_a_step_output_split_inside_a_utf8_character_is_decoded_whole() -> None:
    script = (
        "import sys, time; o = sys.stdout.buffer; b = 'é-secret-é'.encode(); "
        "[(o.write(b[i:i+1]), o.flush(), time.sleep(0.005)) for i in range(len(b))]"
    )
    ran = await run_process(
        [sys.executable, "-c", script], {}, 30.0, lambda: None, secrets=["-secret-"]
    )
    assert ran.output == f"é{MASK}é"


@pytest.mark.parametrize("secrets", [[], ["never-printed"]])
async def test_output_without_secrets_in_it_is_kept_as_printed(secrets: list[str]) -> None:
    ran = await run_process(
        [sys.executable, "-c", "print('hello'); print('wörld')"],
        {},
        30.0,
        lambda: None,
        secrets=secrets,
    )
    assert ran.output == "hello\nwörld\n"


# -- HTTP checks -------------------------------------------------------------------------


async def test_an_http_check_never_shows_a_secret_in_its_url() -> None:
    token = 'tok/en "with" sp@ces'
    step = Step.model_validate(
        {
            "name": "health",
            "http": {
                "url": "${{ vars.BASE }}/health?token=${{ secrets.TOKEN }}",
                "expect_status": 200,
                "deadline_seconds": 0.5,
                "interval_seconds": 0.1,
            },
        }
    )
    with recorder(status=503) as health:
        ctx = StepContext(
            app="web",
            environment="dev",
            version="1.0.0",
            artifact=None,
            step=step,
            config=ResolvedConfiguration(
                environment="dev",
                app="web",
                vars={"BASE": ResolvedVariable(value=health.url, version=1, scope="env")},
                secrets={
                    "TOKEN": ResolvedSecret(
                        kind="api-key", version=1, scope="env", value=SecretValue(token)
                    )
                },
            ),
            workflow_id="promote-web-1.0.0-dev",
            data_namespaces={},
        )
        checked = await check_http(ctx, lambda: None)
    assert not checked.ok and health.calls[0].query == {"token": [token]}
    assert f"/health?token={MASK}: expected HTTP 200, last got HTTP 503" in checked.output
    assert leaked(checked.output, token, 4) == []
