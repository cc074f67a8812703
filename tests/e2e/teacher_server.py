"""The fake Anthropic API (`tests.fakes.anthropic_server`) served inside the bed's network, where
a run's Ray pods reach it: `python -m tests.e2e.teacher_server --host H --port P --log FILE`,
started under `nsenter` like the S3 server.

Every message request is answered after `--latency` seconds (so a stage is still generating when
a test breaks something) and, once answered, which is when the API bills it, logged to `--log`
as one JSON line: the shard its prompt names and the HTTP status. The test reads that file to
prove that no shard was paid for twice."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from tests.fakes.anthropic_server import FakeAnthropic

POLL_S = 0.05


def _stop(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--log", required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    fake = FakeAnthropic(api_key=args.api_key, latency_s=args.latency)
    fake.host, fake.port = args.host, args.port
    with fake, Path(args.log).open("a", encoding="utf-8") as log:
        print(f"serving {fake.url}", flush=True)
        logged = 0
        while True:
            answered = fake.message_requests()
            for request in answered[logged:]:
                log.write(json.dumps({"shard": request.shard, "status": request.status}) + "\n")
            log.flush()
            logged = len(answered)
            time.sleep(POLL_S)


if __name__ == "__main__":
    sys.exit(main())
