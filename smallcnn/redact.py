"""Secrets out of everything shown or recorded: the credentials a URL, a header or a key can carry.

A URL carries credentials in its userinfo (`https://user:password@host/`), its path parameters
(`o.zip;sig=...`), its query (signed addresses: `?token=...`, `?X-Amz-Signature=...`) and
sometimes its fragment (`#access_token=`). `redact_url` replaces each of those parts that is
present with `***` and keeps the rest, so that the address stays readable and it still shows that
credentials were given:

    https://user:pw@host:8443/data.zip;v=1?token=x#t=y -> https://***@host:8443/data.zip;***?***#***
    https://host/data.zip                              -> https://host/data.zip

The redacted form depends only on the address's scheme, host, port and path, so it also names a
dataset without its (expiring) credentials.

`redact` does the same to every URL inside a text (a log line, an error message, a traceback)
and also hides, in any line, what the URL pattern cannot see: the rest of an address cut by a raw
space, `user:pw@` and `?key=value` without a scheme, `Authorization: Bearer ...`,
`KAGGLE_KEY=...` and `"key": "..."`. It errs on the side of hiding: a line that only looks like
one of those loses its value, never a secret its place. Standard library only, so that the
helper processes of smallcnn.logs start fast.
"""

import re
import urllib.parse

MARK = "***"
# Ends of a URL or a token in a line: ASCII whitespace, quotes and angle brackets. Other spaces (a
# non-breaking space pasted into a password) do not end a URL, so they cannot cut a secret off it.
_END = " \t\r\n\f\v'\"<>"
# scheme://... or scheme-relative //..., up to an end. Punctuation that ends it is the sentence's
# ("see https://host/x.zip."), so it stays outside the redaction.
_URL = re.compile(rf"(?:\b[A-Za-z][A-Za-z0-9+.-]*:)?//[^{_END}]+?(?=[.,;:!?)\]}}]*(?:[{_END}]|$))")
# What is left of an address cut by a raw space or without a scheme:
# `user:password@` before a host,
_USERINFO = re.compile(rf"(?<![\w.+/-])[^\s/@:{_END}]+:[^\s/@{_END}]+@(?=[\w\[])")
# and `?name=value`, `;name=value` or `#name=value` right after a word (a path, a file name).
_PARAMETERS = re.compile(
    rf"(?<=[^\s])([?;#])[^\s?;#={_END}]*=[^{_END}]+?(?=[.,;:!?)\]}}]*(?:[{_END}]|$))"
)
# HTTP authorization: `Authorization: Bearer x`, `'Authorization': 'Basic x'`, `authorization=x`.
_AUTHORIZATION = re.compile(
    r"(?i)\b((?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)"
    r"((?:basic|bearer|digest|token|negotiate)\s+)?[^\s'\",;}]+"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{6,}")
# Names that hold credentials, in an environment or in a mapping.
_SECRET_NAME = r"[A-Za-z0-9_.-]*(?:key|token|secret|password|passwd|credentials?)[A-Za-z0-9_.-]*"
# `KAGGLE_KEY=x`, `export API_TOKEN="x"`, `KAGGLE_KEY: x`: upper-case names, as in environments.
_ENVIRONMENT = re.compile(
    r"\b([A-Z0-9_]*(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD|PWD|CREDENTIALS?)[A-Z0-9_]*)"
    r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&]+)"
)
# `"key": "x"`, `'api_key': 'x'` (JSON, a Python mapping) and `password=x` in any case.
_QUOTED = re.compile(rf"(?i)([\"']{_SECRET_NAME}[\"']\s*:\s*)([\"'])(?:\\.|(?!\2).)*\2")
_ASSIGNED = re.compile(
    r"(?i)\b((?:password|passwd|secret|client_secret|api_?key|token|access_token|refresh_token|"
    r"auth_token)\s*=\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&]+)"
)


def redact_url(url):
    """`url` with its userinfo, path parameters, query and fragment replaced by `***` (None
    stays None)."""
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
            re.sub(r";[^/]*", f";{MARK}", parts.path),
            MARK if parts.query else "",
            MARK if parts.fragment else "",
        )
    )


def redact(value):
    """`value` with every secret in it redacted: walks dicts (values), lists, tuples and strings.

    Use it on whatever is shown or written: a config before the report prints it, a record
    before it is saved, a message before it is logged. Other values are returned as they are.
    """
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, tuple):
        return tuple(redact(item) for item in value)
    return value


def _redact_text(text):
    text = _URL.sub(lambda match: redact_url(match.group(0)), text)
    text = _USERINFO.sub(f"{MARK}@", text)
    text = _PARAMETERS.sub(rf"\1{MARK}", text)
    text = _AUTHORIZATION.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}{MARK}", text)
    text = _BEARER.sub(rf"\1{MARK}", text)
    text = _ENVIRONMENT.sub(rf"\1\2{MARK}", text)
    text = _QUOTED.sub(rf"\1\2{MARK}\2", text)
    return _ASSIGNED.sub(rf"\1{MARK}", text)
