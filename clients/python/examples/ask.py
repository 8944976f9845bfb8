"""A Python agent that calls a capability: it asks any agent offering `summarize`, prints the
answer, and exits.

    ACB_TOKEN=$(acb token issue --agent asker --tenant demo --token-secret ...) \
        python examples/ask.py --port 7400 --ca-file .certs/ca.pem "the quick brown fox"
"""

from __future__ import annotations

import argparse
import asyncio
import os

import acb


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("text")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7400)
    parser.add_argument("--ca-file", help="the CA of the bus's TLS certificate; plain TCP without it")
    arguments = parser.parse_args()
    async with acb.connect(
        arguments.host, arguments.port, token=os.environ["ACB_TOKEN"], ca_file=arguments.ca_file
    ) as client:
        response = await client.request(acb.capability("summarize"), arguments.text, timeout=10)
        print(f"{response.sender} answered: {response.text}")


if __name__ == "__main__":
    asyncio.run(main())
