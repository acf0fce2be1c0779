"""Exercise, before the sandbox, the code paths that import lazily on first use.

Under the seccomp filter an `import` that is not already in `sys.modules` is fatal: it
stats and opens files, and the filter answers with SIGSYS, so the whole negotiator dies
the first time a peer proposes such an algorithm. The cryptography library defers some
imports to the first call (X25519 keys load the OpenSSL backend module inside
`from_private_bytes` / `from_public_bytes`), so importing the modules is not enough: each
library-held DH group gets one key pair and one exchange here, with the process still
free to import. MODP groups run on our own extension, already loaded, and are left out:
their precomputation is memory only, which the filter allows.
"""

from __future__ import annotations

import secrets

from ikepriv.crypto import dh
from ikepriv.crypto.groups import GROUPS, ModpGroup


def warm_up() -> tuple[int, ...]:
    """One generate / validate / shared round per non-MODP group; returns the group ids
    warmed (for the caller's tests). Raises whatever the library raises: a group that
    cannot work before the sandbox will not work inside it either."""
    done: list[int] = []
    for gid in GROUPS:
        if isinstance(dh.group(gid), ModpGroup):
            continue
        key = dh.generate(gid, secrets.token_bytes)
        dh.validate_public(gid, key.public)
        key.shared(key.public)
        key.wipe()
        done.append(int(gid))
    return tuple(done)
