"""A DNS server on loopback for the tests: it answers A queries for the names it is told,
with the addresses it is told, as a Kubernetes headless Service's DNS name answers with every
ready pod's address. Real DNS on the wire (dnspython's messages over UDP), so the provider's
resolver is exercised as against a cluster's DNS; the answers change when the test changes
them, as the Service's do when pods come and go."""

from __future__ import annotations

import socket
import threading

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class LoopbackDNS:
    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}  # name (no trailing dot) -> IPv4 addresses
        self.queries = 0
        self.lock = threading.Lock()
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.socket.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def set(self, name: str, addresses: list[str]) -> None:
        with self.lock:
            self.records[name] = list(addresses)

    def stop(self) -> None:
        self.socket.close()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.socket.recvfrom(4096)
            except OSError:
                return  # closed
            try:
                query = dns.message.from_wire(data)
            except dns.exception.DNSException:
                continue
            answer = dns.message.make_response(query)
            with self.lock:
                self.queries += 1
                for question in query.question:
                    name = question.name.to_text().rstrip(".")
                    if name not in self.records:
                        answer.set_rcode(dns.rcode.NXDOMAIN)
                    elif question.rdtype == dns.rdatatype.A and self.records[name]:
                        answer.answer.append(
                            dns.rrset.from_text(question.name, 0, "IN", "A", *self.records[name])
                        )
            try:
                self.socket.sendto(answer.to_wire(), peer)
            except OSError:
                return
