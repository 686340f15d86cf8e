"""The cluster's certificate mesh: one self-signed certificate per node, pinned.

Each node makes its own key pair and certificate on its own host; operators
exchange only certificates, which together form the cluster's trust bundle
(``ca_cert`` in ``cluster.toml``): TLS on the control API and on SPU links
accepts exactly those certificates. No CA key exists that could sign for a
node. Every certificate carries both serverAuth and clientAuth usages and SANs
for the node's host (plus loopback), so the same pair serves the HTTPS control
API and mutual TLS on SPU links. Keys are EC P-256, written 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._fs import atomic_write
from .config import PartySpec
from .errors import ConfigError

VALID_DAYS = 825


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    atomic_write(path, pem, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    atomic_write(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in dict.fromkeys([*hosts, "127.0.0.1", "localhost"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def make_node_cert(out_cert: Path, out_key: Path, party_id: str, hosts: list[str]) -> None:
    """A node's own key pair and self-signed certificate, made on the node's host.

    No cluster CA exists: peers and clients pin every node's certificate (the
    cluster's trust bundle, :func:`write_trust_bundle`), so the node's private
    key never leaves it and no key can sign for another node."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party_id)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(out_key, key)
    _write_cert(out_cert, cert)


def write_trust_bundle(out: Path, certs: list[Path]) -> None:
    """The cluster's trust bundle: every node's certificate, in rank order (public)."""
    pems = []
    for path in certs:
        try:
            cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read node certificate {path}: {exc}") from None
        pems.append(cert.public_bytes(serialization.Encoding.PEM))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, b"".join(pems), 0o644)


def check_node_cert(cert_path: Path, key_path: Path, ca_path: Path, party: PartySpec) -> None:
    """Refuse to start with a certificate that peers would reject."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        trusted = x509.load_pem_x509_certificates(ca_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load TLS material for {party.id}: {exc}") from None
    if key.public_key().public_numbers() != cert.public_key().public_numbers():
        raise ConfigError(f"TLS private key {key_path} does not match certificate {cert_path}")
    if cert not in trusted:
        raise ConfigError(f"certificate {cert_path} is not in the cluster's trust bundle {ca_path}")
    now = dt.datetime.now(dt.timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ConfigError(f"certificate {cert_path} is expired or not yet valid")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))
    for host in {party.control_host, party.link_host}:
        if host not in names:
            raise ConfigError(f"certificate {cert_path} does not name host {host}")
