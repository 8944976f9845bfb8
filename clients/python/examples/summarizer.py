"""A Python agent that serves a capability: it registers `summarize` and answers every request.

    ACB_TOKEN=$(acb token issue --agent summarizer --tenant demo --token-secret ...) \
        python examples/summarizer.py --port 7400 --ca-file .certs/ca.pem
"""

from __future__ import annotations

import argparse
import asyncio
import os

import acb


async def main() -> None:
    arguments = parse_arguments()
    async with acb.connect(
        arguments.host, arguments.port, token=os.environ["ACB_TOKEN"], ca_file=arguments.ca_file
    ) as client:
        await client.register("summarizer", ["summarize"])

        @client.serve
        async def summarize(request: acb.Delivery) -> str:
            words = request.text.split()
            return f"{len(words)} words, starting with {' '.join(words[:3])!r}"

        print(f"{client.agent_id} serves 'summarize'; Ctrl-C to stop", flush=True)
        await asyncio.Event().wait()


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7400)
    parser.add_argument("--ca-file", help="the CA of the bus's TLS certificate; plain TCP without it")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main())
