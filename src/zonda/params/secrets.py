"""Which params values are secrets, and masking them in every params file written and every message logged."""

from __future__ import annotations

import re
from typing import Any


#: What a masked secret reads as in written and logged params.
MASK = "***"
#: Words that make a key secret-looking (``aws_secret_access_key``, ``sasToken``, ``password``, ``account_key``).
SECRET_WORDS = frozenset(
    {"key", "secret", "token", "password", "passwd", "pwd", "credential", "credentials", "auth", "authorization",
     "apikey", "private", "connection", "signature", "sas"}
)
#: Dotted paths (list indices as ``*``) of subtrees whose names look secret but whose values are not:
#: a toleration's taint key, and the Kubernetes Secret *references* (secret name, key -> variable name).
_NOT_SECRET = (
    re.compile(r"^runtime\.resources\.\w+\.tolerations\.\*\.key$"),
    re.compile(r"^runtime\.resources\.\w+\.secrets_as_env$"),
)
#: Values of a secret-looking key that name an access method, not a credential (gcsfs ``token: anon``).
NOT_SECRET_VALUES = frozenset({"anon", "google_default", "cache", "cloud", "browser"})


def is_secret_key(name: str) -> bool:
    """Whether a params key looks like it holds a credential (a word of it is in :data:`SECRET_WORDS`)."""
    words = re.split(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])", str(name))
    return any(w.lower() in SECRET_WORDS for w in words if w)


def mask_secrets(tree: Any, path: str = "") -> Any:
    """A copy of a params tree with the value of every secret-looking key (at any depth) replaced by :data:`MASK`.

    ``None``, empty values, flags and access-method names (``token: anon``) stay as they are (nothing
    to hide, and the shape stays readable); so do the subtrees of :data:`_NOT_SECRET`.
    """
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            child = f"{path}.{key}" if path else str(key)
            if any(p.match(child) for p in _NOT_SECRET):
                out[key] = value
            elif is_secret_key(key) and _may_be_secret(value):
                out[key] = MASK
            else:
                out[key] = mask_secrets(value, child)
        return out
    if isinstance(tree, list):
        return [mask_secrets(v, f"{path}.*") for v in tree]
    if isinstance(tree, str):
        return _URL_PASSWORD.sub(rf"\1{MASK}@", tree)  # https://user:password@host
    return tree


def _may_be_secret(value: Any) -> bool:
    """Whether the value of a secret-looking key is worth hiding (not empty, a flag, or an access method's name)."""
    if value is None or isinstance(value, bool) or value in ("", {}, []):
        return False
    return not (isinstance(value, str) and value in NOT_SECRET_VALUES)


_URL_PASSWORD = re.compile(r"(://[^/:@\s]+:)[^/@\s]+@")
