"""Secrets out of everything shown or recorded: the credentials a URL can carry.

A URL carries credentials in its userinfo (`https://user:password@host/`), its query (signed
addresses: `?token=...`, `?X-Amz-Signature=...`) and sometimes its fragment (`#access_token=`).
`redact_url` replaces each of those parts that is present with `***` and keeps the rest, so that
the address stays readable and it still shows that credentials were given:

    https://user:pw@host:8443/data.zip?token=x#t=y  ->  https://***@host:8443/data.zip?***#***
    https://host/data.zip                           ->  https://host/data.zip

The redacted form depends only on the address's scheme, host, port and path, so it also names a
dataset without its (expiring) credentials.
"""

import re
import urllib.parse

MARK = "***"
# Anything that looks like scheme://..., up to whitespace, a quote or an angle bracket: the URL
# inside a log line, an error message or a YAML dump. Punctuation that ends it is the sentence's
# ("see https://host/x.zip."), so it stays outside the redaction.
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+?(?=[.,;:!?)\]}]*(?:[\s'\"<>]|$))")


def redact_url(url):
    """`url` with its userinfo, query and fragment replaced by `***` (None stays None)."""
    if url is None:
        return None
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        # Not parseable (e.g. a bad IPv6 host): show none of it rather than risk a secret.
        return MARK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MARK}@{netloc.rpartition('@')[2]}"
    return urllib.parse.urlunsplit(
        (
            parts.scheme,
            netloc,
            parts.path,
            MARK if parts.query else "",
            MARK if parts.fragment else "",
        )
    )


def redact(value):
    """`value` with every URL in it redacted: walks dicts (values), lists, tuples and strings.

    Use it on whatever is shown or written: a config before the report prints it, a record
    before it is saved, a message before it is logged. Other values are returned as they are.
    """
    if isinstance(value, str):
        return _URL.sub(lambda match: redact_url(match.group(0)), value)
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, tuple):
        return tuple(redact(item) for item in value)
    return value
