"""The week's accounting: what each simulated slot of each link was, what each email was, and the
figures made of them. Pure: the run hands in what it observed, nothing here reads a clock or the
network, so a test can check that it adds up.

A run samples every link every `slot_h` simulated hours (an account-hour is 1/slot_h slots). Each
sample says whether Unipile's account for the link was connected (the simulator's status `OK`),
whether the user had to act for it to come back (the browser had no working cookie the service
could get, or a checkpoint waited for the user) and whether Unipile was down (an outage). Each
slot of each link falls in exactly one class:

- `connected`: Unipile's account was OK;
- `down_outage`: down while Unipile was down: nobody could have connected it;
- `down_user`: down, the user had to act and had not been asked (no email since it went down);
- `down_recoverable`: down while it could have been connected (a working cookie was there, or the
  user had been asked).

The recoverable hours are `connected` + `down_recoverable`. An email is `needed` when, at the slot
it was sent, the user had to act; `during_outage` when not needed and Unipile was down in the
`outage_window_h` before it (the retries it gave up after ran into the outage); `unneeded` else.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

CONNECTED, NEED_USER, OUTAGE = 1, 2, 4  # bits of one sample
CLASSES = ("connected", "down_recoverable", "down_user", "down_outage")
EMAIL_CLASSES = ("needed", "during_outage", "unneeded")


@dataclass(frozen=True)
class Down:
    """A run of down slots of one link: from a disconnect to connected again (or the end)."""

    link: int
    start_h: float
    hours: float
    cause: str
    censored: bool          # still down when the run ended
    recoverable_h: float    # its down_recoverable hours


@dataclass
class Ledger:
    slot_h: float
    links: int
    slots: int
    counts: Counter = field(default_factory=Counter)            # class -> slots
    cost_by_cause: Counter = field(default_factory=Counter)     # cause -> down_recoverable slots
    downs: list[Down] = field(default_factory=list)
    emails: list[tuple[float, int, str]] = field(default_factory=list)  # (t_h, link, class)
    episodes: int = 0           # times a user had to act for at least act_after_h
    episodes_emailed: int = 0

    def hours(self, cls: str) -> float:
        return self.counts[cls] * self.slot_h

    @property
    def recoverable_h(self) -> float:
        return self.hours("connected") + self.hours("down_recoverable")

    @property
    def total_h(self) -> float:
        return self.links * self.slots * self.slot_h

    @property
    def share_recoverable(self) -> float:
        return self.hours("connected") / self.recoverable_h if self.recoverable_h else 1.0

    @property
    def share_all(self) -> float:
        return self.hours("connected") / self.total_h if self.total_h else 1.0

    def email_count(self, cls: str) -> int:
        return sum(1 for e in self.emails if e[2] == cls)

    @property
    def precision(self) -> float | None:
        return self.email_count("needed") / len(self.emails) if self.emails else None

    @property
    def recall(self) -> float | None:
        return self.episodes_emailed / self.episodes if self.episodes else None

    def reconnect_times(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = defaultdict(list)
        for d in self.downs:
            out[d.cause].append(d.hours)
        return dict(out)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least q of them at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def classify_slot(sample: int, asked: bool) -> str:
    if sample & CONNECTED:
        return "connected"
    if sample & OUTAGE:
        return "down_outage"
    if sample & NEED_USER and not asked:
        return "down_user"
    return "down_recoverable"


def cause_of(link: int, t_h: float, causes: list[tuple[float, int | None, str]]) -> str:
    """The newest fault of this link (or Unipile-wide one naming it) at or before t_h."""
    best = None
    for when, who, what in causes:
        if when > t_h:
            break
        if who == link:
            best = what
    return best or "never connected"


def account(samples: list[bytes], slot_h: float, emails: list[tuple[float, int]],
            causes: list[tuple[float, int | None, str]], act_after_h: float = 4.0,
            outage_window_h: float = 5.0, seen_at: list[float] | None = None) -> Ledger:
    """`samples[link][slot]`: bits CONNECTED | NEED_USER | OUTAGE of that slot. `emails`: (t_h, link)
    of every email sent. `causes`: (t_h, link, cause) of every fault that can disconnect a link,
    sorted by time (a Unipile-wide one is given once per link it hits). `seen_at[slot]`: when the
    slot's sample was taken (its end, `(slot + 1) * slot_h`, unless given: a loaded machine takes
    it later), so a disconnect is put down to the newest fault before it was seen."""
    links = len(samples)
    slots = len(samples[0]) if samples else 0
    led = Ledger(slot_h, links, slots)
    by_link: dict[int, list[float]] = defaultdict(list)
    for t, link in emails:
        by_link[link].append(t)
    outage_slots = [i for i in range(slots) if any(samples[k][i] & OUTAGE for k in range(links))]

    for link in range(links):
        row = samples[link]
        mails = sorted(by_link[link])
        down_since: int | None = None
        cause = ""
        recov = 0
        need_since: int | None = None
        need_emailed = False
        for i in range(slots + 1):
            s = row[i] if i < slots else CONNECTED  # a sentinel closes what is open at the end
            if not s & CONNECTED and down_since is None:
                down_since, recov = i, 0
                cause = cause_of(link, seen_at[i] if seen_at else (i + 1) * slot_h, causes)
            if i < slots:
                t0 = (down_since if down_since is not None else i) * slot_h
                asked = any(t0 <= m < (i + 1) * slot_h for m in mails)
                cls = classify_slot(s, asked)
                led.counts[cls] += 1
                if cls == "down_recoverable":
                    recov += 1
                    led.cost_by_cause[cause] += 1
            if s & CONNECTED and down_since is not None:
                led.downs.append(Down(link, down_since * slot_h, (i - down_since) * slot_h, cause,
                                      censored=i == slots, recoverable_h=recov * slot_h))
                down_since = None
            # an episode in which the user had to act: the down slots with NEED_USER, in a row
            needy = i < slots and bool(s & NEED_USER) and not s & CONNECTED
            if needy and need_since is None:
                need_since, need_emailed = i, False
            if need_since is not None and any(need_since * slot_h <= m < (i + 1) * slot_h for m in mails):
                need_emailed = True
            if not needy and need_since is not None:
                if (i - need_since) * slot_h >= act_after_h:
                    led.episodes += 1
                    led.episodes_emailed += need_emailed
                need_since = None

        for m in mails:
            i = min(slots - 1, int(m / slot_h)) if slots else 0
            if slots and row[i] & NEED_USER:
                cls = "needed"
            elif any(m - outage_window_h <= j * slot_h <= m for j in outage_slots):
                cls = "during_outage"
            else:
                cls = "unneeded"
            led.emails.append((m, link, cls))
    led.emails.sort()
    return led
