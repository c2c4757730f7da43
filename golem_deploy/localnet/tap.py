"""A TAP device inside an activity's network namespace: the VM's VPN interface, locally.

A Golem VM gets its VPN as a virtio network card whose Ethernet frames the exe-unit pumps
to and from the service bus. Locally the same job is done by a Linux TAP device (IFF_TAP,
IFF_NO_PI: one read or write is exactly one Ethernet frame, no header) living in the
activity's own network namespace, so its processes see `lo` and the VPN and nothing else,
while the host process keeps the file descriptor and pumps frames (vpn_host.py).

The device is opened from a short-lived thread that joins the namespace first: a TAP belongs
to the network namespace of the thread that creates it, and `setns` changes only the calling
thread. It is configured like the VM's guest does it (ya-runtime-vm's init): MAC
``90:13:<the 4 bytes of its IP>``, MTU 1220, the address with the network's prefix, up.
Needs CAP_NET_ADMIN over the namespace (root on the host).
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import os
import struct
import subprocess
import threading
from pathlib import Path

from golem_deploy.errors import GolemDeployError

__all__ = ["TapError", "configure_tap", "guest_mac", "open_tap"]

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
VPN_MTU = 1220
"""The MTU of the VM's VPN interface (ya-runtime-vm); keeps frames small on the bus."""


class TapError(GolemDeployError):
    """The VPN interface of an activity could not be created."""


def guest_mac(ip: str) -> str:
    """The VM's VPN MAC address for ``ip``: ``90:13`` and the address's four bytes."""
    return ":".join(f"{b:02x}" for b in b"\x90\x13" + ipaddress.IPv4Address(ip).packed)


def open_tap(netns: Path, name: str) -> int:
    """Create TAP ``name`` in the network namespace ``netns`` (e.g. /proc/PID/ns/net).

    Returns its non-blocking file descriptor; closing it removes the device.
    """
    result: list[int | BaseException] = []

    def create() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            ns_fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(ns_fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            finally:
                os.close(ns_fd)
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                fcntl.ioctl(
                    fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI)
                )
            except OSError:
                os.close(fd)
                raise
            result.append(fd)
        except BaseException as exc:  # reported to the caller's thread below
            result.append(exc)

    # The thread ends right after: its changed namespace never serves anything else.
    thread = threading.Thread(target=create, name="open-tap")
    thread.start()
    thread.join()
    outcome = result[0]
    if isinstance(outcome, BaseException):
        raise TapError(
            f"cannot create the VPN interface {name}: {outcome}",
            hint="the local network's VPN needs root (CAP_NET_ADMIN) and /dev/net/tun",
        )
    return outcome


def configure_tap(netns: Path, name: str, ip: str, network: str) -> None:
    """Give ``name`` in ``netns`` its MAC, MTU, address (with ``network``'s prefix); up."""
    prefix = ipaddress.IPv4Network(network, strict=False).prefixlen
    steps = [
        ["link", "set", "lo", "up"],
        ["link", "set", name, "address", guest_mac(ip), "mtu", str(VPN_MTU)],
        ["addr", "add", f"{ip}/{prefix}", "dev", name],
        ["link", "set", name, "up"],
    ]
    for step in steps:
        done = subprocess.run(
            ["nsenter", f"--net={netns}", "ip", *step],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if done.returncode != 0:
            raise TapError(f"ip {' '.join(step)}: {done.stderr.strip() or done.returncode}")
