"""The site's PKI and broker configuration: CA, client certificates, signing keys, ACL.

``portlane pki init --site FILE --out DIR`` lays out::

    DIR/ca/ca.crt ca.key              the site CA (``--ca-dir`` puts it elsewhere; keep ca.key
                                      offline once the units are issued)
    DIR/broker/ca.crt server.crt server.key acl mosquitto.conf
    DIR/units/<unit>/ca.crt client.crt client.key [signing.key]
    DIR/site-keys.yaml                the public signing keys, to merge into the site file

The CA's private key is never written into a directory a unit or the broker reads
(``units/<unit>/``, ``broker/``); ``init_pki(..., ca_dir=None)`` (the demo) does not write it
at all.

Every lane, scanner and client (``clients:`` in the site file; a ``platform`` client is added
when the site names none) gets a TLS client certificate whose common name is its MQTT client
id, ``portlane-{site}-{unit}``. The shipped broker configuration
(``firmware_config/broker/mosquitto.conf``) requires a certificate, takes the user name from
its common name (``use_identity_as_username``) and the client id from the user name
(``use_username_as_clientid``): a client cannot present a lane's client id without the lane's
key, and so cannot kick the lane off the broker. The ACL (:func:`render_acl`) gives each user
only its topics: a lane its own, its commands and — with per-lane scan topics
(``contract.topics.SCAN_TOPICS_PER_LANE``) — only the scan results of its own passages; the
console and technicians read events, status, responses and checkpoints, never commands; only
the platform commands the lanes. Mosquitto runs as its own user (``user mosquitto`` in the
shipped file), never as root.

Lanes, scanners, the console and technician tools also get an Ed25519 signing key
(``signing.key``, the unit's key of :mod:`portlane.edge.trust.keys`); the platform's agency
keys are the platform's own (``portlane keys generate``).

TLS keys are ECDSA P-256 (what every MQTT stack and OpenSSL build accepts); private key files
are written 0600 and never overwritten.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from portlane.edge.config import PLATFORM_UNIT
from portlane.edge.contract.topics import SCAN_TOPICS_PER_LANE, Topics
from portlane.edge.errors import PkiError
from portlane.edge.trust.keys import generate_unit_key, write_secret

if TYPE_CHECKING:
    from portlane.edge.config import Site

__all__ = [
    "CA_DAYS",
    "CERT_DAYS",
    "PkiUnit",
    "SiteCA",
    "apply_unit_keys",
    "client_id",
    "init_pki",
    "issue_unit",
    "provision_unit_keys",
    "render_acl",
    "render_mosquitto_conf",
    "shipped_mosquitto_conf",
    "site_units",
]

CA_DAYS = 3650
#: Client and server certificates: two years, so a rotation is a routine, not an emergency.
CERT_DAYS = 730
#: Certificates start an hour in the past: a controller whose clock lags still accepts them.
_BACKDATE = dt.timedelta(hours=1)


@dataclasses.dataclass(frozen=True, slots=True)
class PkiUnit:
    id: str
    role: str  # lane | scanner | platform | console | technician
    client_id: str

    @property
    def signs(self) -> bool:
        """Whether the unit gets a signing key (the platform's keys are its agencies')."""
        return self.role != "platform"


def client_id(site_id: str, unit: str) -> str:
    """The MQTT client id of a unit, which is also its certificate's common name."""
    return f"portlane-{site_id}-{unit}"


def site_units(site: Site) -> list[PkiUnit]:
    """Every broker client of the site: lanes, scanners, clients (a ``platform`` client added
    when none has that role)."""
    sid = site.site.id
    units = [PkiUnit(lane.id, "lane", client_id(sid, lane.id)) for lane in site.lanes]
    units += [PkiUnit(s.id, "scanner", client_id(sid, s.id)) for s in site.scanners]
    units += [PkiUnit(c.id, c.role, client_id(sid, c.id)) for c in site.clients]
    if not any(u.role == "platform" for u in units):
        units.append(PkiUnit("platform", "platform", client_id(sid, "platform")))
    return units


# --------------------------------------------------------------------------------------------
# ACL and broker configuration


def render_acl(site: Site, *, scan_topics_per_lane: bool = SCAN_TOPICS_PER_LANE) -> str:
    """The Mosquitto ACL of the site: each user (certificate common name) only its topics.
    ``scan_topics_per_lane``: lanes read only ``{scanner}/event/+/{lane}`` (their own passages'
    scan results, ``contract.topics``) instead of the scanner's whole event tree."""
    sid = site.site.id
    platform = Topics(sid, PLATFORM_UNIT)
    expected = f"{platform.base}/expected"  # the platform's registrations topic (config.PLATFORM_UNIT)
    out = [
        f"# Mosquitto ACL for site {sid}, rendered by `portlane pki acl` from the site file.",
        "# One user per certificate common name (use_identity_as_username); nothing else is allowed.",
        "",
    ]

    def own(unit: str) -> list[str]:
        t = Topics(sid, unit)
        return [
            f"topic write {Topics.all_events(sid, unit)}",
            f"topic write {t.status}",
            f"topic write {t.response}",
            f"topic write {t.checkpoint}",
            f"topic read {t.cmd('#')}",
        ]

    scanners = {s.id: s for s in site.scanners}
    for lane in site.lanes:
        out.append(f"# lane {lane.id}")
        out.append(f"user {client_id(sid, lane.id)}")
        out += own(lane.id)
        out.append(f"topic read {expected}")
        if lane.scanner is not None and lane.scanner in scanners:
            if scan_topics_per_lane:
                out.append(f"topic read {Topics(sid, lane.scanner).lane_scans(lane.id)}")
            else:
                out.append(f"topic read {Topics.all_events(sid, lane.scanner)}")
        out.append("")
    for s in site.scanners:
        out.append(f"# scanner {s.id}")
        out.append(f"user {client_id(sid, s.id)}")
        out += own(s.id)
        for lane_id in s.lanes:
            out.append(f"topic read {Topics(sid, lane_id).event('inspection.requested')}")
            out.append(f"topic read {Topics(sid, lane_id).event('passage.completed')}")
        out.append("")
    # What a reader of the site needs: never the commands (they are the platform's business).
    anyone = Topics(sid, "+")
    reads = [f"topic read {t}" for t in (Topics.all_events(sid), anyone.status, anyone.response, anyone.checkpoint)]
    commands = {c.id: c.commands for c in site.clients}
    for u in site_units(site):
        if u.role in ("lane", "scanner"):
            continue
        out.append(f"# {u.role} {u.id}")
        out.append(f"user {u.client_id}")
        if u.role == "platform":
            out += [
                f"topic write {anyone.cmd('#')}",
                f"topic write {expected}",
                f"topic write {Topics.all_events(sid, PLATFORM_UNIT)}",
                f"topic read {Topics(sid, '#').base}",
            ]
        elif u.role == "console":
            # replay_events, and what its key may sign (clients[].commands), to any unit.
            names = sorted({"replay_events", *commands.get(u.id, ())})
            out += [f"topic write {anyone.cmd(name)}" for name in names] + reads
        else:  # technician: looks, never publishes
            out += reads
        out.append("")
    return "\n".join(out)


def shipped_mosquitto_conf() -> str:
    """The broker configuration shipped in ``firmware_config/broker/mosquitto.conf``."""
    return (resources.files("portlane.firmware_config") / "broker" / "mosquitto.conf").read_text(encoding="utf-8")


def render_mosquitto_conf(
    *,
    directory: Path,
    port: int | None = None,
    bind: str | None = None,
    max_packet_size: int | None = None,
    persistence_dir: Path | None = None,
    log_dest: str | None = None,
) -> str:
    """The shipped configuration with its file paths pointed at ``directory`` (``ca.crt``,
    ``server.crt``, ``server.key``, ``acl``) and, for tests, another port/bind address. Every
    security setting stays as shipped."""
    text = shipped_mosquitto_conf()
    files = {"cafile": "ca.crt", "certfile": "server.crt", "keyfile": "server.key", "acl_file": "acl"}
    for directive, name in files.items():
        text, n = re.subn(rf"(?m)^{directive} .*$", f"{directive} {directory / name}", text)
        if n != 1:
            raise PkiError(f"shipped mosquitto.conf has {n} '{directive}' lines, expected 1")
    if port is not None or bind is not None:
        m = re.search(r"(?m)^listener (\d+)(?: (\S+))?$", text)
        if m is None:
            raise PkiError("shipped mosquitto.conf has no listener line")
        text = text.replace(m.group(0), f"listener {port or m.group(1)} {bind or m.group(2) or ''}".rstrip())
    if max_packet_size is not None:
        text = re.sub(r"(?m)^max_packet_size .*$", f"max_packet_size {max_packet_size}", text)
    if persistence_dir is not None:
        text = re.sub(r"(?m)^persistence_location .*$", f"persistence_location {persistence_dir}/", text)
    else:
        text = re.sub(r"(?m)^persistence true$", "persistence false", text)
    if log_dest is not None:
        text = re.sub(r"(?m)^log_dest .*$", f"log_dest {log_dest}", text)
    return text


# --------------------------------------------------------------------------------------------
# Certificates


def _name(cn: str) -> x509.Name:
    if len(cn) > 64:
        raise PkiError(f"common name {cn!r} is longer than 64 characters; use shorter site/unit ids")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class SiteCA:
    """The site's certificate authority (an ECDSA P-256 key and a self-signed certificate)."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self.key = key

    @classmethod
    def create(cls, site_id: str, *, now: dt.datetime | None = None) -> SiteCA:
        now = now or dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name(f"portlane {site_id} CA")
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, directory: Path) -> SiteCA:
        try:
            cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
            key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise PkiError(f"{directory}: no usable site CA ({exc}); run `portlane pki init` first") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{directory}/ca.key: not an EC key")
        return cls(cert, key)

    def save(self, directory: Path) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_secret(directory / "ca.key", _pem_key(self.key))
        (directory / "ca.crt").write_bytes(_pem_cert(self.cert))

    @property
    def cert_pem(self) -> bytes:
        return _pem_cert(self.cert)

    def issue(
        self,
        cn: str,
        *,
        server_hosts: Iterable[str] = (),
        client: bool = True,
        days: int = CERT_DAYS,
        now: dt.datetime | None = None,
    ) -> tuple[bytes, bytes]:
        """A new key and certificate for ``cn`` as ``(cert_pem, key_pem)``: a client
        certificate, or with ``server_hosts`` a server certificate for those names/addresses."""
        now = now or dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        hosts = list(server_hosts)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH] if hosts and not client else [ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if hosts:
            names: list[x509.GeneralName] = []
            for h in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(h)))
                except ValueError:
                    names.append(x509.DNSName(h))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return _pem_cert(cert), _pem_key(key)


# --------------------------------------------------------------------------------------------
# Laying out a site


@dataclasses.dataclass(frozen=True, slots=True)
class IssuedUnit:
    unit: PkiUnit
    directory: Path
    key_id: str | None = None
    public_key: str | None = None


def _key_id(unit: str, now: dt.datetime) -> str:
    return f"{unit}-{now:%Y%m%d-%H%M}"[:32]


def issue_unit(ca: SiteCA, unit: PkiUnit, out: Path, *, now: dt.datetime | None = None) -> IssuedUnit:
    """Certificate, key and (unless platform) signing key of one unit into ``out/units/<id>``.
    Refuses to touch an existing unit directory: move it aside to re-issue (rotation)."""
    now = now or dt.datetime.now(dt.UTC)
    d = out / "units" / unit.id
    if d.exists():
        raise PkiError(f"{d}: exists; move it aside to issue {unit.id} again (key rotation, docs/security.md)")
    d.mkdir(mode=0o700, parents=True)
    cert, key = ca.issue(unit.client_id, now=now)
    (d / "ca.crt").write_bytes(ca.cert_pem)
    (d / "client.crt").write_bytes(cert)
    write_secret(d / "client.key", key)
    if not unit.signs:
        return IssuedUnit(unit, d)
    _, public = generate_unit_key(d)
    return IssuedUnit(unit, d, _key_id(unit.id, now), public)


_DEFAULT_CA_DIR = Path("ca")


def init_pki(
    site: Site,
    out: Path,
    *,
    broker_hosts: Iterable[str] = ("localhost", "127.0.0.1"),
    extra_units: Iterable[PkiUnit] = (),
    ca_dir: Path | None = _DEFAULT_CA_DIR,
    now: dt.datetime | None = None,
) -> list[IssuedUnit]:
    """Create the site CA, the broker's certificate, configuration and ACL, and every unit's
    certificate and signing key under ``out`` (see the module docstring). The CA goes to
    ``ca_dir`` (relative: under ``out``; default ``out/ca``; ``None``: its key is not kept at
    all — nothing can be issued later, as for a throw-away demo PKI). Refuses an ``out`` that
    already holds a CA, and a ``ca_dir`` inside ``units/`` or ``broker/``."""
    now = now or dt.datetime.now(dt.UTC)
    ca_path = None if ca_dir is None else (ca_dir if ca_dir.is_absolute() else out / ca_dir)
    if ca_path is not None:
        for shared in (out / "units", out / "broker"):
            if ca_path.resolve().is_relative_to(shared.resolve()):
                raise PkiError(f"{ca_path}: the CA key must not be where units or the broker read ({shared})")
        if (ca_path / "ca.key").exists():
            raise PkiError(f"{out}: already holds a site CA; use `portlane pki issue` for new units")
    out.mkdir(mode=0o755, parents=True, exist_ok=True)
    ca = SiteCA.create(site.site.id, now=now)
    if ca_path is not None:
        ca.save(ca_path)
    broker = out / "broker"
    broker.mkdir(mode=0o750, exist_ok=True)
    cert, key = ca.issue(client_id(site.site.id, "broker"), server_hosts=broker_hosts, client=False, now=now)
    (broker / "ca.crt").write_bytes(ca.cert_pem)
    (broker / "server.crt").write_bytes(cert)
    write_secret(broker / "server.key", key)
    (broker / "acl").write_text(render_acl(site) + "\n", encoding="utf-8")
    (broker / "mosquitto.conf").write_text(
        render_mosquitto_conf(directory=broker, max_packet_size=site.broker.max_packet_size), encoding="utf-8"
    )
    issued = [issue_unit(ca, u, out, now=now) for u in [*site_units(site), *extra_units]]
    (out / "site-keys.yaml").write_text(render_key_fragment(issued), encoding="utf-8")
    return issued


def render_key_fragment(issued: Iterable[IssuedUnit]) -> str:
    """The ``key:`` entries to merge into the site file, one per unit that signs."""
    lines = ["# Public signing keys issued by `portlane pki init`: add each as the `key:` of that unit."]
    for i in issued:
        if i.key_id is not None:
            lines.append(f'{i.unit.id}: {{id: {i.key_id}, public_key: "{i.public_key}"}}  # {i.unit.role}')
    return "\n".join(lines) + "\n"


def apply_unit_keys(raw: Mapping[str, Any], issued: Iterable[IssuedUnit], *, absolute: bool = True) -> dict[str, Any]:
    """A copy of a raw site mapping with each issued unit's ``key`` filled in (the private key
    file as an absolute path when ``absolute``, else the credential name ``signing.key``)."""
    import copy

    out = copy.deepcopy(dict(raw))
    by_unit = {i.unit.id: i for i in issued if i.key_id is not None}

    def key(unit: str) -> dict[str, str] | None:
        i = by_unit.get(unit)
        if i is None:
            return None
        return {
            "id": str(i.key_id),
            "public_key": str(i.public_key),
            "private_key_file": str(i.directory / "signing.key") if absolute else "signing.key",
        }

    for section in ("lanes", "scanners", "clients"):
        for entry in out.get(section, []) or []:
            k = key(entry["id"])
            if k is not None:
                entry["key"] = k
    return out


def provision_unit_keys(
    raw: Mapping[str, Any], directory: Path, *, now: dt.datetime | None = None, keep_existing: bool = False
) -> dict[str, Any]:
    """Signing keys only (no certificates) for every lane, scanner and keyed client role of a raw
    site mapping, private halves under ``directory/<unit>/signing.key``: a copy of ``raw`` with
    the ``key`` entries filled in. For demos and tests on an open broker, where events must still
    be signed. With ``keep_existing`` a unit that already has a ``key`` keeps it (a demo on a
    site file that carries its own keys)."""
    now = now or dt.datetime.now(dt.UTC)
    issued: list[IssuedUnit] = []
    for section, role in (("lanes", "lane"), ("scanners", "scanner"), ("clients", None)):
        for entry in raw.get(section, []) or []:
            r = role or str(entry.get("role"))
            if r == "platform" or (keep_existing and entry.get("key")):
                continue
            unit = PkiUnit(str(entry["id"]), r, "")
            d = directory / unit.id
            _, public = generate_unit_key(d)
            issued.append(IssuedUnit(unit, d, _key_id(unit.id, now), public))
    return apply_unit_keys(raw, issued)
