"""manifests/hello-world.yaml written as a yapapi 0.13 program, for bench/vs_yapapi.py.

Runs with yapapi's Python (not ours), against the local network in the YAGNA_* variables,
asking for the image in IMAGE_URL / IMAGE_HASH. Talks to the benchmark on stdio:

    hello.py N      starts N instances (each: deploy, start, echo once, then /bin/date
                    every 5 s, like hello-world), prints "UP" once every instance runs,
                    then waits for a line on stdin; then stops the cluster and leaves
                    Golem (terminates the agreements, waits for and accepts the invoices,
                    releases the allocation), prints "DOWN" and exits.

Written as a yapapi user would for the real network, with the documented Services API.
"""

import asyncio
import os
import sys
from datetime import datetime, timedelta

from yapapi import Golem
from yapapi.payload import vm
from yapapi.services import Service, ServiceState

POLL_S = 0.05  # how often the cluster's state is looked at (as tight as our CLI's 0.1 s)


class Hello(Service):
    @staticmethod
    async def get_payload():
        return await vm.repo(image_hash=os.environ["IMAGE_HASH"], image_url=os.environ["IMAGE_URL"])

    async def start(self):
        async for script in super().start():  # deploy and start
            yield script
        script = self._ctx.new_script()
        script.run("/bin/echo", "Hello from Golem!")
        yield script

    async def run(self):
        while True:
            script = self._ctx.new_script()
            script.run("/bin/date")
            yield script
            await asyncio.sleep(5)


async def wait_for(cluster, state):
    while not all(instance.state == state for instance in cluster.instances):
        await asyncio.sleep(POLL_S)


async def main(instances):
    async with Golem(
        budget=10.0,
        subnet_tag=os.environ["YAGNA_SUBNET"],
        payment_driver=os.environ["YAGNA_PAYMENT_DRIVER"],
        payment_network=os.environ["YAGNA_PAYMENT_NETWORK"],
    ) as golem:
        cluster = await golem.run_service(
            Hello, num_instances=instances, expiration=datetime.now() + timedelta(minutes=30)
        )
        while len(cluster.instances) < instances:
            await asyncio.sleep(POLL_S)
        await wait_for(cluster, ServiceState.running)
        print("UP", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        cluster.stop()
        await wait_for(cluster, ServiceState.terminated)
    print("DOWN", flush=True)


if __name__ == "__main__":
    if os.environ.get("YAPAPI_LOG"):
        from yapapi.log import enable_default_logger

        enable_default_logger(log_file=os.environ["YAPAPI_LOG"])
    asyncio.run(main(int(sys.argv[1])))
