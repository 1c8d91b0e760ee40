"""NATS subjects and JetStream names of one cluster (docs/nats.md has the table)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Subjects carry a 16-hex-digit prefix of the cluster id, not all 64: it is in
# every message (twice, with the reply subject), and only namespaces; membership
# is proven by each message's signature (edgestate.sync.nats_seal).
CLUSTER_TOKEN_CHARS = 16
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]")


def doc_token(doc: str) -> str:
    """``doc`` as one subject token: ``.`` (the token separator) becomes ``~``,
    which the document-name rule never allows, so the mapping is reversible."""
    return doc.replace(".", "~")


def token_doc(token: str) -> str:
    """The document name of a subject token (``doc_token`` reversed)."""
    return token.replace("~", ".")


@dataclass(frozen=True, slots=True)
class Subjects:
    """Every subject and stream name the link uses for one cluster."""

    prefix: str
    stream: str
    cert_stream: str

    @classmethod
    def of(cls, cluster_id: str, stream: str = "") -> Subjects:
        """Names for ``cluster_id`` (``stream`` overrides the derived stream name)."""
        token = _NOT_NAME.sub("_", cluster_id[:CLUSTER_TOKEN_CHARS]) or "_"
        name = stream or f"EDGESTATE_{token}"
        return cls(prefix=f"edgestate.{token}", stream=name, cert_stream=f"{name}_CERTS")

    def doc(self, doc: str) -> str:
        """Where updates of ``doc`` are published (captured by the stream)."""
        return f"{self.prefix}.doc.{doc_token(doc)}"

    @property
    def docs(self) -> str:
        """The stream's subject filter: every document."""
        return f"{self.prefix}.doc.>"

    def doc_of(self, subject: str) -> str | None:
        """The document a ``doc`` subject names, or None for another subject."""
        head = f"{self.prefix}.doc."
        return token_doc(subject[len(head) :]) if subject.startswith(head) else None

    def cert(self, sender: str) -> str:
        """Where a node publishes its certificate (DER), by fingerprint."""
        return f"{self.prefix}.cert.{sender}"

    @property
    def certs(self) -> str:
        """The certificate stream's subject filter."""
        return f"{self.prefix}.cert.*"

    @property
    def state_vectors(self) -> str:
        """Anti-entropy requests (request/reply, not stored)."""
        return f"{self.prefix}.sv"

    @property
    def reports(self) -> str:
        """Membership reports for garbage collection (not stored: sent every round)."""
        return f"{self.prefix}.reports"

    @property
    def collected(self) -> str:
        """Collection records (not stored: diffs carry them too)."""
        return f"{self.prefix}.collected"


def durable_name(node_id: str) -> str:
    """This node's durable consumer: resumes from its last acked sequence."""
    return "node_" + _NOT_NAME.sub("_", node_id[:48])
