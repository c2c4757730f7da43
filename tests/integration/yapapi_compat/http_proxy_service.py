"""A yapapi 0.13 program on the Golem VPN, written as for the real Golem network.

It uses yapapi's own network API: `Golem.create_network`, `run_service(..., network=...)`
and `yapapi.contrib.service.http_proxy.LocalHttpProxy`, as yapapi's http-proxy example does.
The service starts a small HTTP server in its instance (PERL_SERVER, perl with no modules:
the test image has no python) on REMOTE_PORT -- an unprivileged port, since the local
network's sandbox cannot bind ports below 1024 -- and the program GETs it through the proxy
on 127.0.0.1:PROXY_PORT, printing what came back.

Run with exactly the variables `golem-deploy localnet start` prints (YAGNA_* and a PATH with
its `gftp` first), IMAGE_URL pointing at a .gvmi image with perl (yapapi checks it with HEAD;
the local provider downloads it) with IMAGE_HASH its sha3-224, and PROXY_PORT.
"""

import asyncio
import os
import urllib.request
from datetime import datetime, timedelta

from yapapi import Golem
from yapapi.contrib.service.http_proxy import HttpProxyService, LocalHttpProxy
from yapapi.payload import vm
from yapapi.services import ServiceState

REMOTE_PORT = 8000

# Answers every request with "served <path> by perl": nothing but this server says it.
PERL_SERVER = r"""
my $port = shift @ARGV;
socket(my $server, 2, 1, 6) or die "socket: $!";            # AF_INET, SOCK_STREAM, TCP
setsockopt($server, 1, 2, pack("l", 1)) or die "setsockopt: $!";  # SO_REUSEADDR
bind($server, pack("S n x12", 2, $port)) or die "bind: $!";  # 0.0.0.0:$port
listen($server, 16) or die "listen: $!";
print "listening on $port\n";
while (accept(my $client, $server)) {
    my $request = <$client>;
    while (my $line = <$client>) { last if $line =~ /^\r?\n$/; }
    my ($path) = $request =~ m{^GET (\S+)};
    my $body = "served $path by perl\n";
    print $client "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n" . $body;
    close $client;
}
"""


class HttpService(HttpProxyService):
    def __init__(self) -> None:
        super().__init__(remote_port=REMOTE_PORT)

    @staticmethod
    async def get_payload():
        return await vm.repo(
            image_hash=os.environ["IMAGE_HASH"],
            image_url=os.environ["IMAGE_URL"],
            capabilities=[vm.VM_CAPS_VPN],
        )

    async def start(self):
        async for script in super().start():
            yield script
        script = self._ctx.new_script()
        script.upload_bytes(PERL_SERVER.encode(), "/golem/input/serve.pl")
        script.run(
            "/bin/sh",
            "-c",
            f"perl /golem/input/serve.pl {REMOTE_PORT} > /golem/input/serve.log 2>&1 &",
        )
        yield script
        print("NODE", self.network_node.ip, flush=True)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return f"{response.status} {response.read().decode().strip()}"


async def main():
    async with Golem(
        budget=1.0,
        subnet_tag=os.environ["YAGNA_SUBNET"],
        payment_driver=os.environ["YAGNA_PAYMENT_DRIVER"],
        payment_network=os.environ["YAGNA_PAYMENT_NETWORK"],
    ) as golem:
        network = await golem.create_network("192.168.77.1/24")
        async with network:
            cluster = await golem.run_service(
                HttpService,
                network=network,
                expiration=datetime.now() + timedelta(minutes=30),
            )
            deadline = asyncio.get_running_loop().time() + 90
            while not all(i.state == ServiceState.running for i in cluster.instances):
                assert asyncio.get_running_loop().time() < deadline, "service did not start"
                await asyncio.sleep(0.5)
            proxy = LocalHttpProxy(cluster, int(os.environ["PROXY_PORT"]))
            await proxy.run()
            try:
                url = f"http://127.0.0.1:{os.environ['PROXY_PORT']}"
                for path in ("/hello", "/again"):
                    # A blocking client in a thread, so the proxy keeps serving meanwhile.
                    answer = await asyncio.get_running_loop().run_in_executor(None, get, url + path)
                    print("GOT", answer, flush=True)
            finally:
                await proxy.stop()
            cluster.stop()
            while not all(i.state == ServiceState.terminated for i in cluster.instances):
                await asyncio.sleep(0.2)
    print("DONE", flush=True)


if __name__ == "__main__":
    if os.environ.get("YAPAPI_LOG"):
        from yapapi.log import enable_default_logger

        enable_default_logger(log_file=os.environ["YAPAPI_LOG"])
    asyncio.run(main())
