"""Unit keys and credential files: where a daemon finds its private key and broker credentials.

Private material never sits in the site YAML. The site file names *files*:

* an absolute path, used as is;
* a bare name (``signing.key``, ``client.crt``) looked up in ``$CREDENTIALS_DIRECTORY`` — the
  directory systemd fills from ``LoadCredential=name:/path`` (readable by the service only);

and in either form ``{unit}`` is replaced by the unit id of the daemon reading it (``c1``,
``xray-1``, ``console``), so one site file serves every unit.

Private signing keys are files in PKCS#8 PEM (``-----BEGIN PRIVATE KEY-----``, what
``openssl genpkey -algorithm ed25519`` writes), or a single line with the 32-byte seed in
base64 (the form of ``firmware_config/demo_keys.yaml``). :func:`write_private_key` creates them
with mode 0600 and refuses to overwrite.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from portlane.edge.contract.canonical import b64decode_strict
from portlane.edge.errors import CredentialError

if TYPE_CHECKING:
    from portlane.edge.config import BrokerConfig, UnitKey

__all__ = [
    "CREDENTIALS_ENV",
    "BrokerCredentials",
    "broker_credentials",
    "credential_path",
    "generate_keypair",
    "generate_unit_key",
    "load_private_key",
    "load_private_key_file",
    "load_public_key",
    "load_unit_key",
    "load_unit_signer",
    "private_key_b64",
    "public_key_b64",
    "trusted_keys_from_config",
    "write_private_key",
    "write_secret",
]

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


def load_public_key(b64: str) -> Ed25519PublicKey:
    """An Ed25519 public key from its 32 raw bytes in standard base64 (the site-config form)."""
    raw = b64decode_strict(b64.strip())
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_private_key(b64: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from its 32-byte seed in standard base64."""
    raw = b64decode_strict(b64.strip())
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 private key (seed) is 32 bytes, got {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def private_key_b64(key: Ed25519PrivateKey) -> str:
    """The 32-byte seed of ``key`` in standard base64 (what :func:`load_private_key` reads)."""
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return base64.b64encode(seed).decode("ascii")


def generate_keypair() -> tuple[str, str]:
    """A new Ed25519 key pair as ``(private_key_b64, public_key_b64)``."""
    key = Ed25519PrivateKey.generate()
    return private_key_b64(key), public_key_b64(key)


def trusted_keys_from_config(keys: Iterable[Any]) -> dict[str, str]:
    """``platform.keys`` of a site config (``TrustedKey`` models or ``{id, public_key}``
    mappings) as the ``{key_id: public_key_b64}`` mapping :class:`CommandVerifier` takes."""
    out: dict[str, str] = {}
    for k in keys:
        kid, pub = (k["id"], k["public_key"]) if isinstance(k, Mapping) else (k.id, k.public_key)
        if kid in out:
            raise ValueError(f"trusted key id {kid!r} listed twice")
        out[kid] = pub
    return out


def credential_path(name: str, *, unit: str) -> Path:
    """Resolve a credential reference from the site file (see the module docstring)."""
    ref = name.replace("{unit}", unit)
    p = Path(ref)
    if p.is_absolute():
        return p
    creds = os.environ.get(CREDENTIALS_ENV)
    if not creds:
        raise CredentialError(
            f"{ref}: a credential name needs ${CREDENTIALS_ENV} (systemd LoadCredential=) — "
            "or give an absolute path in the site file"
        )
    return Path(creds) / ref


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CredentialError(
            f"{path}: cannot read the {what}: {exc.strerror or exc}; check the path and that this user may read it"
        ) from exc


def load_private_key_file(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PKCS#8 PEM file or a base64-seed file."""
    raw = _read(path, "private key")
    if raw.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(raw, password=None)
        except (ValueError, TypeError) as exc:
            raise CredentialError(f"{path}: not a readable PEM private key ({exc}); regenerate it") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise CredentialError(f"{path}: holds a {type(key).__name__}, not an Ed25519 key; regenerate it")
        return key
    try:
        seed = base64.b64decode(raw.strip(), validate=True)
    except binascii.Error:
        raise CredentialError(f"{path}: neither PEM nor a base64 seed; regenerate it") from None
    if len(seed) != 32:
        raise CredentialError(f"{path}: an Ed25519 seed is 32 bytes, this is {len(seed)}; regenerate it")
    return Ed25519PrivateKey.from_private_bytes(seed)


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write ``key`` as PKCS#8 PEM, mode 0600, failing if ``path`` exists (never overwrite a key)."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_secret(path, pem)


def write_secret(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (O_EXCL: never replaces a file) and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def generate_unit_key(directory: Path, *, name: str = "signing.key") -> tuple[Path, str]:
    """Generate an Ed25519 key pair: the private half to ``directory/name`` (0600, created
    with its parents 0700 if needed), the public half returned in site-file form."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    path = directory / name
    write_private_key(path, key)
    return path, public_key_b64(key)


def load_unit_key(key: UnitKey, *, unit: str) -> Ed25519PrivateKey:
    """The private half of ``unit``'s site-file ``key`` entry, checked against the public key
    the site publishes, so a unit never signs with a key nobody trusts. Raises
    :class:`CredentialError`."""
    path = credential_path(key.private_key_file, unit=unit)
    private = load_private_key_file(path)
    if public_key_b64(private) != key.public_key.strip():
        raise CredentialError(
            f"{path}: this private key does not match key {key.id} in the site file; "
            "install the right file or update the site file's public_key"
        )
    return private


def load_unit_signer(key: UnitKey, *, unit: str) -> Any:
    """An :class:`~portlane.edge.trust.events.EventSigner` for ``unit`` from its site-file
    ``key`` entry (:func:`load_unit_key`). Raises :class:`CredentialError`."""
    from portlane.edge.trust.events import EventSigner

    return EventSigner(key.id, load_unit_key(key, unit=unit))


@dataclass(frozen=True, slots=True)
class BrokerCredentials:
    """Resolved broker credentials of one unit, as :class:`~portlane.edge.delivery.mqtt.MqttLink`
    keyword arguments (:meth:`link_kwargs`)."""

    username: str | None = None
    password_file: Path | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    max_packet_size: int | None = None

    def link_kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"username": self.username, "password": self.password}
        if self.password_file is not None:
            out["password_file"] = str(self.password_file)
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value)
        if self.max_packet_size is not None:
            out["max_packet_size"] = self.max_packet_size
        return out


def broker_credentials(broker: BrokerConfig, *, unit: str, url: str | None = None) -> BrokerCredentials:
    """The credentials ``unit`` connects with. TLS files apply only to an ``mqtts://`` URL
    (``url`` overrides the site's, e.g. a test broker), and every file must be readable now:
    a daemon finds a missing certificate at start, not at its first reconnect."""
    use_url = url or broker.url
    tls = broker.tls if use_url.startswith("mqtts://") else None
    files: dict[str, Path | None] = {"ca_file": None, "cert_file": None, "key_file": None}
    if tls is not None:
        for name in files:
            ref = getattr(tls, name)
            if ref is not None:
                files[name] = credential_path(ref, unit=unit)
                _read(files[name], name.replace("_", " "))  # type: ignore[arg-type]
    password_file = None
    if broker.password_file is not None:
        password_file = credential_path(broker.password_file, unit=unit)
        _read(password_file, "broker password")
    return BrokerCredentials(
        username=broker.username,
        password=broker.password.get_secret_value() if broker.password else None,
        password_file=password_file,
        max_packet_size=broker.max_packet_size,
        **files,
    )
