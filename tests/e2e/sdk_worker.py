"""The SDK's own environment worker, unchanged, as a process: `python sdk_worker.py URL ENV KEY WORKDIR`."""

import asyncio
import logging
import sys

import anthropic


async def main() -> None:
    url, env, key, workdir = sys.argv[1:5]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    client = anthropic.AsyncAnthropic(base_url=url, api_key="unused-by-the-worker")
    await client.beta.environments.work.worker(
        environment_id=env, environment_key=key, workdir=workdir, max_idle=5
    ).run()


asyncio.run(main())
