"""Which params values are secrets, masking them in every params file written and every message logged, and
``${env:NAME}`` references: how a credential reaches a stage without being in a pipeline input.

A secret-looking value may be written as ``${env:NAME}``; the stage that uses it resolves it from its
environment (:func:`resolve_env_references`), so KFP's inputs, the compiled IR and the run's stored
parameters hold the reference, never the value. A literal secret is turned into such a reference for a
local run (:meth:`zonda.params.Params.with_secret_references`) and refused for a cluster run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from zonda.params.base import ParamsError


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
#: A value read from the task's environment: ``${env:NAME}`` (how a credential is passed, never in clear).
ENV_REFERENCE = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")
#: Prefix of the variables a local run passes literal secrets in (:func:`secret_env_name`).
SECRET_ENV_PREFIX = "ZONDA_SECRET_"
#: Values of a secret-looking key that name an access method, not a credential (gcsfs ``token: anon``).
NOT_SECRET_VALUES = frozenset({"anon", "google_default", "cache", "cloud", "browser"})


def is_secret_key(name: str) -> bool:
    """Whether a params key looks like it holds a credential (a word of it is in :data:`SECRET_WORDS`)."""
    words = re.split(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])", str(name))
    return any(w.lower() in SECRET_WORDS for w in words if w)


def mask_secrets(tree: Any, path: str = "") -> Any:
    """A copy of a params tree with the value of every secret-looking key (at any depth) replaced by :data:`MASK`.

    ``None``, empty values, flags, access-method names (``token: anon``) and ``${env:NAME}`` references stay
    as they are (nothing to hide, and the shape stays readable); so do the subtrees of :data:`_NOT_SECRET`.
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
    return not (isinstance(value, str) and (value in NOT_SECRET_VALUES or env_reference(value)))


_URL_PASSWORD = re.compile(r"(://[^/:@\s]+:)[^/@\s]+@")


def env_reference(value: Any) -> str | None:
    """The variable a ``${env:NAME}`` reference names, or ``None`` when ``value`` is not one."""
    match = ENV_REFERENCE.match(value) if isinstance(value, str) else None
    return match.group(1) if match else None


def secret_env_name(path: str) -> str:
    """The environment variable a literal secret at dotted ``path`` travels in (``ZONDA_SECRET_DATA_SOURCE_...``)."""
    return SECRET_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_").upper()


def env_references(tree: Any, path: str = "") -> dict[str, str]:
    """Dotted path -> variable name of every ``${env:NAME}`` reference in a params tree (list indices as numbers)."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list):
        items = enumerate(tree)
    else:
        name = env_reference(tree)
        return {path: name} if name else {}
    found: dict[str, str] = {}
    for key, value in items:
        found.update(env_references(value, f"{path}.{key}" if path else str(key)))
    return found


def resolve_env_references(tree: Any, field: str, environ: Mapping[str, str] | None = None) -> Any:
    """A copy of ``tree`` (params read at ``field``) with every ``${env:NAME}`` reference replaced by ``$NAME``.

    Called where a stage uses the value, so only the task that needs a credential needs its variable.
    Raises ParamsError naming the field and the variable when ``environ`` (default: this process's) lacks it.
    """
    environ = os.environ if environ is None else environ
    if isinstance(tree, dict):
        return {k: resolve_env_references(v, f"{field}.{k}", environ) for k, v in tree.items()}
    if isinstance(tree, list):
        return [resolve_env_references(v, f"{field}.{i}", environ) for i, v in enumerate(tree)]
    name = env_reference(tree)
    if name is None:
        return tree
    if name not in environ:
        raise ParamsError(
            f"{field} is {tree}, but environment variable {name} is not set in this task's environment "
            f"(locally: export {name}; on Kubernetes: map a Secret's key to {name} with "
            f"runtime.resources.<stage>.secrets_as_env)"
        )
    return environ[name]
