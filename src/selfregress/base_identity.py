"""A chain's base model by immutable identity: a LoggedModel id (or a folder) plus a sha256 of its weights.

``models:/selfregress-base@base`` is a moving alias: a new ``bootstrap`` points it at other
weights. A chain therefore pins its base once, when it starts: the alias (or ``name/version``)
becomes ``models:/<LoggedModel id>``, which never changes, and the weights' sha256 goes into
the config hash and the chain run's tags (``selfregress.base_model``, ``selfregress.base_digest``).
Campaign 0 starts from the pinned URI, so CARE's first incumbent is pinned too. A resumed chain
starts from its logged pin, whatever the alias says now, and refuses to go on if those weights
no longer hash to the logged digest (a folder edited in place).

Torch-free: it reads files and asks the store. A hub id is not pinned (its digest is '').
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from selfregress import metric_keys as K
from selfregress.errors import UserError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass(frozen=True)
class BaseIdentity:
    uri: str       # what campaign 0 loads: models:/<LoggedModel id>, a folder, or a hub id
    digest: str    # sha256 of the weights ('' for a hub id)

    def tags(self) -> dict[str, str]:
        return {K.BASE_MODEL: self.uri, K.BASE_DIGEST: self.digest}


def weights_digest(folder: str | Path) -> str:
    """sha256 over the folder's weight files: each one's relative name and bytes, in sorted order.

    Config and tokenizer files are not hashed: the digest names the trained parameters.
    """
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise UserError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) under {folder}: not a model folder")
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _folder(uri: str) -> Path | None:
    """The local folder of a URI's weights, or None for a hub id."""
    if uri.startswith("models:/"):
        from selfregress.tracking import download_model
        return Path(download_model(uri))
    return Path(uri) if Path(uri).is_dir() else None


def pin(store, uri: str) -> BaseIdentity:
    """The immutable identity of ``uri``: an alias or a name/version resolved to its LoggedModel id."""
    if uri.startswith("models:/"):
        uri = f"models:/{store.model_id(uri)}"
    folder = _folder(uri)
    return BaseIdentity(uri, weights_digest(folder) if folder else "")


def logged(chain_run) -> BaseIdentity | None:
    """The identity a chain run was started with (None for a chain logged before pins existed)."""
    tags = chain_run.data.tags
    return BaseIdentity(tags[K.BASE_MODEL], tags.get(K.BASE_DIGEST, "")) if K.BASE_MODEL in tags else None


def verify(identity: BaseIdentity, chain_id: str) -> None:
    """Refuse to resume a chain whose pinned weights no longer hash to its logged digest."""
    folder = _folder(identity.uri)
    if identity.digest and folder and weights_digest(folder) != identity.digest:
        raise UserError(f"resume: the base of chain {chain_id}, {identity.uri}, no longer has the weights it "
                        f"started from (sha256 {identity.digest[:12]}...): restore them, or start a new chain")
