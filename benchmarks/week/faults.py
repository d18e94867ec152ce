"""The week's faults: one table of rates (each with where its figure comes from) and the seeded
draw of every fault of a run from it. Pure: no I/O, no clock. The same seed, links and hours give
the same schedule, so the product and the plain recipe live through exactly the same week.

Each link's faults of each kind come from a generator of their own (seeded with the run's seed,
the link and the kind), so adding links or hours leaves the other links' faults where they were.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

# kind -> (rate, unit, what it does in the run, source). Rates are per link and per simulated day
# unless the unit says otherwise.
FAULTS: dict[str, tuple[float, str, str, str]] = {
    "session_end": (1 / 30, "per link per day",
                    "LinkedIn ends the session: Unipile's account turns CREDENTIALS, the browser's cookie "
                    "still works", "issue #19's estimate; assumed"),
    "signout": (1 / 60, "per link per day",
                "the user signs out in the browser: the cookie is dead (any reconnect with it: 401 "
                "expired_credentials), Unipile's account turns CREDENTIALS; the user signs in again after "
                "`signin_after_h`", "issue #19's estimate; assumed. A log-out ends a cookie account: "
                "contract §8 [V2ST]"),
    "rotate": (1 / 7, "per link per day",
               "`li_at` rotates in the browser: the old cookie dies, the extension syncs the new one "
               "(if installed and signed in)", "issue #19's estimate; assumed"),
    "webhook_lost": (0.05, "of account-status webhooks",
                     "the CREDENTIALS webhook of a session end or a sign-out is never delivered "
                     "(the status still changes in Unipile)", "issue #19's estimate; assumed. Dropped after "
                     "5 failed deliveries: contract §6 [DOC-WH]"),
    "outage": (1 / 7, "per week-day (Unipile-wide)",
               "Unipile answers 503 to every call for `outage_h`; at its start `outage_drop_share` of the "
               "accounts turn CREDENTIALS (webhook delivered), their cookies still work",
               "issue #19 (once a week, an hour); the share dropped is assumed"),
    "burst_429": (1.0, "per day (Unipile-wide)",
                  "every call answers 429 for `burst_h`", "assumed"),
    "checkpoint": (1 / 200, "of session ends",
                   "the next reconnect answers an IN_APP_VALIDATION checkpoint; the user approves it only "
                   "once asked (`respond_after_h` after the email)", "issue #19's estimate; assumed"),
    "uninstall": (0.01 / 7, "per link per day",
                  "the extension is uninstalled: no more syncs (the browser's cookie keeps working and "
                  "rotating)", "issue #19 (1% of users a week); assumed"),
    "ipv6": (0.40, "of browsers",
             "the browser reaches the service over IPv6 (X-Forwarded-For from a trusted proxy); Unipile "
             "takes only an IPv4 `ip` (contract §1)", "assumed (Google's public IPv6 adoption figure is "
             "of this order)"),
    "misplaced_end": (1 / 14, "per link per day",
                      "extra session ends of a link whose Unipile account has neither `ip` nor `country` "
                      "(the session runs near our server, not the user)", "assumed; contract §8: another "
                      "country than the browser's is a known reason for LinkedIn to end a session "
                      "(UNCONFIRMED)"),
}
SIGNIN_AFTER_H = (1.0, 24.0)     # uniform: hours until a signed-out user signs in again (assumed)
RESPOND_AFTER_H = (0.5, 8.0)     # uniform: hours from an email to the user acting on it (assumed)
OUTAGE_H = 1.0
OUTAGE_DROP_SHARE = 0.10
BURST_H = 1 / 6


@dataclass(frozen=True, order=True)
class Fault:
    """One fault at `t_h` simulated hours. `link` is None for a Unipile-wide one."""

    t_h: float
    kind: str
    link: int | None = None
    lost: bool = False          # session_end / signout / misplaced_end: the webhook is not delivered
    checkpoint: bool = False    # session_end: the next reconnect answers a checkpoint
    hours: float = 0.0          # signout: until the user signs in; outage / burst_429: how long
    drops: tuple[int, ...] = ()  # outage: the links whose accounts turn CREDENTIALS at its start


@dataclass
class Week:
    seed: int
    links: int
    hours: float
    faults: list[Fault]
    ipv6: list[bool]
    respond_after_h: list[list[float]] = field(default_factory=list)  # per link, one per email, in turn

    def of(self, kind: str) -> list[Fault]:
        return [f for f in self.faults if f.kind == kind]


def _times(rng: random.Random, per_day: float, hours: float, start_h: float) -> list[float]:
    """A Poisson process of `per_day` over [start_h, hours)."""
    out, t = [], start_h
    while True:
        t += rng.expovariate(per_day / 24)
        if t >= hours:
            return out
        out.append(t)


def draw(seed: int, links: int, hours: float, start_h: float = 1.0) -> Week:
    """Every fault of a run of `links` links over `hours` simulated hours (none before `start_h`,
    the warm-up in which every link pairs and connects)."""
    rate = {k: v[0] for k, v in FAULTS.items()}
    faults: list[Fault] = []
    ipv6, respond = [], []
    for link in range(links):
        def rng(kind: str) -> random.Random:
            return random.Random(f"{seed}:{link}:{kind}")

        ipv6.append(rng("ipv6").random() < rate["ipv6"])
        r = rng("respond")
        respond.append([r.uniform(*RESPOND_AFTER_H) for _ in range(64)])
        lost = rng("webhook_lost")
        cp = rng("checkpoint")
        for t in _times(rng("session_end"), rate["session_end"], hours, start_h):
            faults.append(Fault(t, "session_end", link, lost=lost.random() < rate["webhook_lost"],
                                checkpoint=cp.random() < rate["checkpoint"]))
        for t in _times(rng("misplaced_end"), rate["misplaced_end"], hours, start_h):
            faults.append(Fault(t, "misplaced_end", link, lost=lost.random() < rate["webhook_lost"]))
        sign = rng("signin")
        for t in _times(rng("signout"), rate["signout"], hours, start_h):
            faults.append(Fault(t, "signout", link, lost=lost.random() < rate["webhook_lost"],
                                hours=sign.uniform(*SIGNIN_AFTER_H)))
        for t in _times(rng("rotate"), rate["rotate"], hours, start_h):
            faults.append(Fault(t, "rotate", link))
        gone = _times(rng("uninstall"), rate["uninstall"], hours, start_h)
        if gone:
            faults.append(Fault(gone[0], "uninstall", link))
    g = random.Random(f"{seed}:unipile")
    outages = []
    for t in _times(g, rate["outage"], hours, start_h):
        drops = tuple(i for i in range(links) if g.random() < OUTAGE_DROP_SHARE)
        outages.append((t, t + OUTAGE_H))
        faults.append(Fault(t, "outage", hours=OUTAGE_H, drops=drops))
    for t in _times(g, rate["burst_429"], hours, start_h):
        # a burst inside (or running into) an outage would cut the outage's window short: dropped
        if not any(a - BURST_H <= t <= b for a, b in outages):
            faults.append(Fault(t, "burst_429", hours=BURST_H))
    faults.sort()
    return Week(seed, links, hours, faults, ipv6, respond)


def table_markdown() -> str:
    lines = ["| fault | rate | what happens | source |", "|---|---|---|---|"]
    for kind, (rate, unit, what, source) in FAULTS.items():
        shown = f"1 in {1 / rate:g}" if rate < 1 and unit.startswith("per") else f"{rate:g}"
        if unit.startswith("of"):
            shown = f"{rate:.1%}".replace(".0%", "%")
        lines.append(f"| `{kind}` | {shown} {unit} | {what} | {source} |")
    lines.append(f"\nSign-in after a sign-out: uniform {SIGNIN_AFTER_H[0]:g}–{SIGNIN_AFTER_H[1]:g} h; a user acts on "
                 f"an email after uniform {RESPOND_AFTER_H[0]:g}–{RESPOND_AFTER_H[1]:g} h (assumed). Outage "
                 f"{OUTAGE_H:g} h, {OUTAGE_DROP_SHARE:.0%} of accounts dropped at its start; 429 burst "
                 f"{BURST_H * 60:.0f} min (assumed).")
    return "\n".join(lines)
