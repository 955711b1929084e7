"""QingCloud for the lab (lab only): the API emulator (``qingcloud_api``) answering the Salt
master on the lab's bridge, and its data plane (``qingcloud_dataplane``), a real haproxy on this
machine holding each load balancer's address on the bridge, so that the lab hosts reach ksha's
QingCloud load balancers as they would reach QingCloud's in their VxNet.

What it stands for: one zone (``lab1``) of one account, whose instances are the lab hosts (``i-<host
name>``, each at its lab address in the VxNet ``vxnet-lab``, the lab's subnet), with one EIP
(``eip-console``, an address of the lab's subnet standing in for a public one) and one security
group (``sg-lab``). The API key is made anew for each start and written to a file on the master
(``credentials_file``, mode 0600); the pillar names only the file.

``LabCloud.stop`` stops the API, haproxy, and takes the addresses off the bridge; ``core.down``
finds a haproxy left by a test session that died (its config is under the lab's state).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

import yaml

from ksha_lab import core
from ksha_lab.qingcloud_api import Cloud, serve
from ksha_lab.qingcloud_dataplane import DataPlane

ZONE, VXNET, SECURITY_GROUP, EIP = "lab1", "vxnet-lab", "sg-lab", "eip-console"
# the EIP's address and, for tests, a free address for the internal load balancer: offsets in
# the lab's subnet above the hosts and the VIP (core.VIP_OFFSET)
EIP_OFFSET, INTERNAL_OFFSET = 210, 201


def workdir() -> Path:
    return core.STATE / "qingcloud"


def _bridge(action: str):
    def change(address: str) -> None:
        core.run(["ip", "addr", action, f"{address}/32", "dev", core.BRIDGE], check=action == "replace")

    return change


class LabCloud:
    """The emulator serving on the lab's bridge (``api``: the pillar's ``api`` mapping), with its
    data plane."""

    def __init__(self, lab: core.Lab, job_s: float = 0.2):
        net = ipaddress.ip_network(lab.subnet)
        self.eip_address = str(net.network_address + EIP_OFFSET)
        self.internal_address = str(net.network_address + INTERNAL_OFFSET)
        self.key_id = "QYLAB" + secrets.token_hex(6).upper()
        self.secret = secrets.token_urlsafe(24)
        work = workdir()
        work.mkdir(parents=True, exist_ok=True)
        self.credentials_file = work / "credentials.yaml"
        self.credentials_file.touch(mode=0o600)
        os.chmod(self.credentials_file, 0o600)  # a file an earlier start left keeps its mode otherwise
        self.credentials_file.write_text(
            yaml.safe_dump({"access_key_id": self.key_id, "secret_access_key": self.secret})
        )
        self.dataplane = DataPlane(work / "dataplane", add_address=_bridge("replace"), remove_address=_bridge("del"))
        self.cloud = Cloud(
            zone=ZONE,
            keys={self.key_id: self.secret},
            instances={f"i-{h.name}": h.ip for h in lab.hosts.values()},
            vxnets={VXNET: str(net)},
            eips={EIP: self.eip_address},
            security_groups={SECURITY_GROUP: {"name": "ksha-lab"}},
            job_s=job_s,
            on_applied=self.dataplane,
        )
        self.server = serve(self.cloud, lab.master_ip, 0)
        host, port = self.server.server_address[:2]
        self.api = {"host": host, "port": port, "protocol": "http"}

    def settings(self, **overrides) -> dict:
        """ksha:loadbalancer:qingcloud for this cloud (the key: by ``credentials_file``)."""
        return {
            "zone": ZONE,
            "vxnet": VXNET,
            "eip": EIP,
            "security_group": SECURITY_GROUP,
            "credentials_file": str(self.credentials_file),
            "api": dict(self.api),
            "job_timeout_s": 60,
            # QingCloud's quickest checks (every 2 s, 2 to go down or up): the lab's data plane
            # takes a backend that serves nothing out in seconds
            "healthy_check_option": "2|5|2|2",
            **overrides,
        }

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.dataplane.stop()
        for address in sorted(self.dataplane.addresses):
            _bridge("del")(address)
        self.dataplane.addresses.clear()
