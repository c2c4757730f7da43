"""A yapapi 0.13 Services API program, written as for the real Golem network.

Run with exactly the variables `golem-deploy localnet start` prints (YAGNA_* and a PATH with
its `gftp` first), IMAGE_URL pointing at a .gvmi image (yapapi checks it with HEAD; the local
provider downloads it) with IMAGE_HASH its sha3-224, and DOWNLOAD_TO naming the local file
the service's start() downloads.
"""

import asyncio
import os
from datetime import datetime, timedelta

from yapapi import Golem
from yapapi.payload import vm
from yapapi.services import Service, ServiceState


class Hello(Service):
    @staticmethod
    async def get_payload():
        return await vm.repo(
            image_hash=os.environ.get("IMAGE_HASH", "0" * 56), image_url=os.environ["IMAGE_URL"]
        )

    async def start(self):
        async for script in super().start():
            yield script
        script = self._ctx.new_script()
        started = script.run("/bin/echo", "started-ok")
        # Files both ways, through yapapi's `gftp server` and the provider's ExeUnit.
        script.upload_bytes(b"sent-by-yapapi\n", "/golem/input/in.txt")
        script.run("/bin/sh", "-c", "tr a-z A-Z < /golem/input/in.txt > /golem/output/out.txt")
        script.download_file("/golem/output/out.txt", os.environ["DOWNLOAD_TO"])
        yield script
        print("START", (await started).stdout.strip(), flush=True)

    async def run(self):
        script = self._ctx.new_script()
        ran = script.run("/bin/sh", "-c", "echo running-on-$((6*7))")
        yield script
        print("RUN", (await ran).stdout.strip(), flush=True)
        while True:
            await asyncio.sleep(1)


async def main():
    async with Golem(
        budget=1.0,
        subnet_tag=os.environ["YAGNA_SUBNET"],
        payment_driver=os.environ["YAGNA_PAYMENT_DRIVER"],
        payment_network=os.environ["YAGNA_PAYMENT_NETWORK"],
    ) as golem:
        cluster = await golem.run_service(
            Hello, num_instances=1, expiration=datetime.now() + timedelta(minutes=30)
        )
        deadline = asyncio.get_running_loop().time() + 60
        while not all(i.state == ServiceState.running for i in cluster.instances):
            assert asyncio.get_running_loop().time() < deadline, "service did not start"
            await asyncio.sleep(0.5)
        print("PROVIDER", cluster.instances[0].provider_name, flush=True)
        await asyncio.sleep(2)  # let run() execute its script
        cluster.stop()
        while not all(i.state == ServiceState.terminated for i in cluster.instances):
            await asyncio.sleep(0.2)
    print("DONE", flush=True)


if __name__ == "__main__":
    if os.environ.get("YAPAPI_LOG"):
        from yapapi.log import enable_default_logger

        enable_default_logger(log_file=os.environ["YAPAPI_LOG"])
    asyncio.run(main())
