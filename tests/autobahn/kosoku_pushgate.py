"""Runs the Autobahn TestSuite cases (through kosoku) against pushgate's real endpoint.

Autobahn's fuzzingclient expects an echo server; pushgate is not one. Its protocol
(docs/protocol.md) differs from an echo server in exactly two observable ways, and this
driver translates both inside the Autobahn case base class before any case runs:

1. The first message on every connection is `{"type":"connected","v":1,...}`. It is
   checked (a text frame, JSON, type "connected", v 1) and not counted as an event; a
   connection whose first message is anything else keeps it as an event, so the case
   fails.
2. Where Autobahn expects a text message echoed, pushgate answers with one JSON reply:
   `{"type":"error","code":"bad_json",...}` (Autobahn's payloads are never commands);
   where it expects a binary message echoed, `{"type":"error","code":
   "binary_not_supported",...}`. Each expected ("message", payload, binary) event
   becomes ("reply", code) and each received reply becomes ("reply", its code); any
   other server message stays as it came and fails the case.

Everything else is Autobahn's own verdict, unchanged: which events arrive and in what
order (pongs with their payloads, one reply per complete message), who closes, whether
the close is clean, and the close code. What the translation cannot see is the content
of a reassembled message; the protocol crate's round-trip property tests cover that.

The compression cases (12.x, 13.x) have their own message handler, which compares an
echo's SHA-1; it is replaced by one that expects pushgate's reply to each compressed
message (`compressed_on_message`).

Prints one line per case that did not pass, then `N passed, M failed`. Exits 1 if a
case failed that is not in --allow (the explained failures of docs/conformance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter

import kosoku.cases  # noqa: F401  imports every case; puts Autobahn's `case` on sys.path
from kosoku import FailureError, run_fuzzingclient
from kosoku._report import write_reports

import case as autobahn  # the base class of every Autobahn case
import case12_x_x as compression_cases  # 12.x and 13.x (permessage-deflate)

REPLY_FOR_ECHO = {False: "bad_json", True: "binary_not_supported"}


def _expected_as_replies(self: autobahn.Case) -> None:
    """Rewrites expected echoes as the reply pushgate sends instead (once per case)."""
    if getattr(self, "_pushgate_expected", None) is self.expected:
        return
    for verdict, events in list(self.expected.items()):
        self.expected[verdict] = [
            ("reply", REPLY_FOR_ECHO[bool(e[2])]) if e[0] == "message" else e
            for e in events
        ]
    self._pushgate_expected = self.expected


def _is_connected(msg: object, binary: bool) -> bool:
    if binary:
        return False
    try:
        v = json.loads(msg)
    except (TypeError, ValueError):
        return False
    return isinstance(v, dict) and v.get("type") == "connected" and v.get("v") == 1


def on_message(self: autobahn.Case, msg: object, binary: bool) -> None:
    if not getattr(self, "_pushgate_greeted", False):
        self._pushgate_greeted = True
        if _is_connected(msg, binary):
            return
    event: tuple = ("message", msg, binary)
    if not binary:
        try:
            v = json.loads(msg)
            if isinstance(v, dict) and v.get("type") == "error":
                event = ("reply", v.get("code"))
        except (TypeError, ValueError):
            pass
    self.received.append(event)
    self.finishWhenDone()


_finish = autobahn.Case.finishWhenDone
_lost = autobahn.Case.onConnectionLost


def finish_when_done(self: autobahn.Case) -> None:
    _expected_as_replies(self)
    _finish(self)


def on_connection_lost(self: autobahn.Case, failed_by_me: bool) -> None:
    _expected_as_replies(self)
    _lost(self, failed_by_me)


autobahn.Case.onMessage = on_message
autobahn.Case.finishWhenDone = finish_when_done
autobahn.Case.onConnectionLost = on_connection_lost


def compressed_on_message(self: autobahn.Case, msg: object, binary: bool) -> None:
    """12.x/13.x (permessage-deflate): each compressed message sent must be answered
    with exactly the reply pushgate gives that message uncompressed, before the next is
    sent: `binary_not_supported` for binary data; for text (slices of a JSON file, never
    a command), an error reply. The cases' own onMessage compares an echo's SHA-1,
    which pushgate cannot give; the inflated content is checked by the protocol
    crate's unit tests and by tests/compression (Python websockets) and the Node tests.
    """
    import copy

    if not getattr(self, "_pushgate_greeted", False):
        self._pushgate_greeted = True
        if _is_connected(msg, binary):
            return
    code = None
    if not binary:
        try:
            v = json.loads(msg)
            if isinstance(v, dict) and v.get("type") == "error":
                code = v.get("code")
        except (TypeError, ValueError):
            pass
    want_binary = self.TESTDATA["binary"]
    ok = code == "binary_not_supported" if want_binary else code is not None and code != "binary_not_supported"
    if not ok:
        self.behavior = autobahn.Case.FAILED
        self.result = f"expected the reply to message {self.count}, got {str(msg)[:120]!r} (binary {binary})"
        self.p.sendClose(self.p.CLOSE_STATUS_CODE_NORMAL)
    elif self.count < self.COUNT:
        self.sendOne()
    else:
        self.behavior = autobahn.Case.OK
        self.result = "Ok, every compressed message was answered in time."
        self.trafficStats = copy.deepcopy(self.p.trafficStats)
        self.p.sendClose(self.p.CLOSE_STATUS_CODE_NORMAL)


for _c in [*compression_cases.Case12_X_X, *compression_cases.Case13_X_X]:
    _c.onMessage = compressed_on_message


async def run(args: argparse.Namespace) -> int:
    try:
        results = await asyncio.wait_for(
            run_fuzzingclient(args.url, args.include, args.exclude, args.parallelism),
            args.timeout,
        )
    except FailureError as failure:
        results = failure.results
    except asyncio.TimeoutError:
        print(f"FAIL the cases did not finish within {args.timeout} s")
        print("0 passed, 1 failed")
        return 1
    if args.report:
        write_reports(results, args.report)
    allowed = set(args.allow or [])
    verdicts = Counter()
    unexplained = 0
    for r in results:
        verdicts[(r.behavior.value, r.behavior_close.value)] += 1
        if r.passed:
            continue
        explained = r.case_id in allowed
        unexplained += not explained
        print(
            f"{'EXPLAINED' if explained else 'FAIL'} {r.case_id}: "
            f"behavior={r.behavior.value} close={r.behavior_close.value} "
            f"({r.result} / {r.result_close}) "
            f"expected={str(r.expected)[:200]} received={str(r.received)[:200]} "
            f"remote close={r.remote_close_code}"
        )
    for case_id in sorted(allowed - {r.case_id for r in results if not r.passed}):
        if any(r.case_id == case_id for r in results):
            print(f"note: {case_id} is on the allow list but passed; take it off")
    summary = ", ".join(f"{b}/{c}: {n}" for (b, c), n in sorted(verdicts.items()))
    print(f"verdicts (behavior/close): {summary}")
    passed = sum(r.passed for r in results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 1 if unexplained or not results else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="ws://host:port/ws of a running pushgate")
    p.add_argument("-i", "--include", action="append", help="case ids or globs")
    p.add_argument("-x", "--exclude", action="append", help="case ids or globs")
    p.add_argument("--allow", action="append", help="case id of an explained failure")
    p.add_argument("-p", "--parallelism", type=int, default=2)
    p.add_argument("--timeout", type=float, default=240, help="seconds for the whole run")
    p.add_argument("--report", help="directory for kosoku's HTML/JSON reports")
    sys.exit(asyncio.run(run(p.parse_args())))


if __name__ == "__main__":
    main()
