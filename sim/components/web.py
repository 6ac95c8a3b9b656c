"""``web:`` web tiers: request handlers that answer users in-line (synchronously) or with 202
Accepted after publishing the job (asynchronously), and what the user sees of either."""

from __future__ import annotations

import difflib
from typing import Annotated, Iterable, Optional

import numpy as np
from pydantic import Field, model_validator

from models.link import Link
from models.notification import Poll, Push
from models.web_tier import WebOptions, WebTier

from ..fields import DurationOrDistribution, Name, PositiveDuration, Strict
from .base import BROKER, Arrow, Box, Finding, Kind, Load, Shown, Source
from .delays import stay_moments
from .producers import ArrivalSpec, arrival_process

LINKS = ("request", "respond", "publish")
WEB_EVENTS = ("requests", "accepted", "refused")


class LinksSpec(Strict):
    """The latency of each network hop of a request (a duration or a distribution; absent:
    instant): ``request`` user to handler, ``respond`` handler to user, ``publish`` handler to
    broker and back (serialisation and the broker's acknowledgement), paid by the handler."""

    request: Optional[DurationOrDistribution] = None
    respond: Optional[DurationOrDistribution] = None
    publish: Optional[DurationOrDistribution] = None


class NotifySpec(Strict):
    """How the user learns that an asynchronous job is done: a ``push`` (its latency) or polling
    every ``poll`` after each answer (told by the first status answer after the completion). A
    status request is a request to the tier: it crosses the links, waits for a handler and holds
    it for its ``status`` lookup (a duration or a distribution; absent: no time)."""

    push: Optional[DurationOrDistribution] = None
    poll: Optional[PositiveDuration] = None
    status: Optional[DurationOrDistribution] = None

    @model_validator(mode="after")
    def _one_way(self):
        if (self.push is None) == (self.poll is None):
            raise ValueError("give one way to notify: push (a latency) or poll (an interval)")
        if self.status is not None and self.poll is None:
            raise ValueError("status is the handler time of a poll: it needs poll (an interval)")
        return self


class WebTierSpec(Strict):
    """Users' requests (``arrivals``) served by ``handlers`` request handlers, first come first
    served; at most ``backlog`` wait for one (more: 503). A handler is held for the whole call:
    the in-line ``work``, then each delay station in ``calls`` in turn (downstream services, a
    fan-out). Without ``publishes_to`` the tier is synchronous: the work is done when the handler
    answers. With it, the handler then publishes the job to that broker and answers 202 Accepted;
    a worker does the work, and the last stage may signal completion by sending to the tier
    (``sends_to: NAME``), which tells the user by ``notify``. ``client_step``: what the client
    does after a 202 to make the task seem done (optimistic UI). ``deadline``: the share of
    requests not completed within it, and of those whose user did not know the result within it
    (refused or unfinished requests miss it). ``work_stream``: draw the work from the service-time stream of the
    part of that name, so that a design where a worker pool of that name does the same work draws
    the same times (common random numbers in ``asyncsim compare``)."""

    name: Name
    arrivals: ArrivalSpec
    handlers: Annotated[int, Field(ge=1, strict=True)]
    work: Optional[DurationOrDistribution] = None
    work_stream: Optional[Name] = None
    calls: list[Name] = []
    links: LinksSpec = LinksSpec()
    publishes_to: Annotated[Optional[Name], BROKER] = None
    backlog: Optional[Annotated[int, Field(ge=0, strict=True)]] = None
    client_step: Optional[DurationOrDistribution] = None
    notify: Optional[NotifySpec] = None
    deadline: Optional[PositiveDuration] = None

    @model_validator(mode="after")
    def _asynchronous_keys(self):
        if self.publishes_to is None:
            for key in ("client_step", "notify"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} belongs to an asynchronous tier (one that publishes_to a broker); a synchronous answer carries the result")
            if self.links.publish is not None:
                raise ValueError("links.publish belongs to an asynchronous tier (one that publishes_to a broker)")
        return self


def handler_time(spec: WebTierSpec, stations: dict) -> tuple[float, float, bool]:
    """What a request holds its handler for (work, calls, publication, and when the client polls
    at least one status lookup; independent parts): (mean, squared coefficient of variation,
    whether it is exactly exponential)."""
    status = spec.notify.status if spec.notify is not None else None
    parts = [distribution.build() for distribution in (spec.work, spec.links.publish, status) if distribution is not None]
    moments = [(d.mean, d.scv * d.mean ** 2) for d in parts] + [stay_moments(stations[name]) for name in spec.calls]
    mean, variance = sum(m for m, _ in moments), sum(v for _, v in moments)
    if len(moments) != 1:
        exponential = False
    elif parts:
        exponential = parts[0].exponential
    else:
        station = stations[spec.calls[0]]
        exponential = station.fan_out == 1 and station.delay.build().exponential
    return mean, (variance / mean ** 2 if mean > 0 else 0.0), exponential


def handler_time_s(spec: WebTierSpec, stations: dict) -> float:
    """The mean time a request holds its handler: work, calls and the publication."""
    return handler_time(spec, stations)[0]


def signallers(name: str, scenario) -> list[str]:
    """The parts whose ``sends_to`` names the web tier ``name``: the ends of its asynchronous path
    (worker pools, delay stations), whose messages are its completion signals."""
    return [part.name for part in (*scenario.workers, *scenario.delays) if part.sends_to == name]


class WebTiers(Kind):
    section = "web"
    noun = "a web tier"
    Spec = WebTierSpec
    build_order = 3  # after the delay stations it calls and the brokers it publishes to, before the pools that signal it

    def problems(self, spec: WebTierSpec, scenario) -> Iterable[Finding]:
        stations = {d.name: d for d in scenario.delays}
        unknown = [name for name in spec.calls if name not in stations]
        for name in unknown:
            close = difflib.get_close_matches(name, stations, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            yield Finding("calls", f"'{name}' is not a delay station{hint} (delays: {', '.join(sorted(stations)) or 'none'})")
        for name in spec.calls:
            if name in stations and stations[name].sends_to is not None:
                yield Finding("calls", f"the delay station '{name}' sends_to {stations[name].sends_to}; a called station returns to its caller")
        for producer in scenario.producers:
            if producer.sends_to == spec.name:
                yield Finding(None, f"producer '{producer.name}' sends_to this web tier; a web tier takes requests from its own arrivals, and only the last stage of its asynchronous path sends to it (the completion signal)")
        signalled = bool(signallers(spec.name, scenario))
        if spec.notify is not None and not signalled:
            yield Finding("notify", "no worker pool or delay station signals this tier's completions (sends_to: " + spec.name + "), so no user would be notified")
        if spec.deadline is not None and spec.publishes_to is not None and not signalled:
            yield Finding("deadline", "no worker pool or delay station signals this tier's completions (sends_to: " + spec.name + "), so none could be timed against the deadline")
        if unknown:
            return
        held_s = handler_time_s(spec, stations)
        rate = spec.arrivals.mean_rate()
        if spec.backlog is None and rate * held_s >= spec.handlers:
            yield Finding("handlers", f"unstable: {rate:.4g} requests/s each holding a handler {held_s * 1000:.4g}ms on average need "
                                      f"{rate * held_s:.3g} handlers, and there are {spec.handlers}: requests would wait without bound. "
                                      "Add handlers, shorten the call, publish the work (publishes_to), or bound the wait with 'backlog'")

    def flow(self, spec: WebTierSpec) -> Source | None:
        """An asynchronous tier is a source for the broker it publishes to."""
        if spec.publishes_to is None:
            return None
        return Source(spec.name, spec.publishes_to, spec.arrivals.mean_rate())

    def build(self, spec: WebTierSpec, context) -> WebTier:
        signalled_by = signallers(spec.name, context.scenario)
        options = WebOptions(calls=[context.part("delays", name) for name in spec.calls], backlog=spec.backlog, signalled=bool(signalled_by))
        if spec.work is not None:
            options.work = context.sampler(spec.work.build(), "service_time", component=spec.work_stream or spec.name)
        polling = spec.notify is not None and spec.notify.poll is not None
        for hop in LINKS:
            latency = getattr(spec.links, hop)
            if latency is not None:
                name = f"{spec.name}:{hop}"
                boundary = context.boundary(name, "link", keep_sojourns=False)
                setattr(options, hop, Link(context.env, name, context.sampler(latency.build(), f"{hop}_latency"), boundary))
                if polling and hop != "publish":  # status polls draw their own, so requests draw the same as in a design without them
                    setattr(options, f"poll_{hop}", Link(context.env, name, context.sampler(latency.build(), f"poll_{hop}_latency"), boundary))
        if spec.publishes_to is not None:
            options.publish_to = context.target(spec.publishes_to)
        if spec.client_step is not None:
            options.client_step = context.sampler(spec.client_step.build(), "client_step")
        if spec.notify is not None:
            push = spec.notify.push
            if push is not None:
                options.notification = Push(context.sampler(push.build(), "push_latency"))
            else:
                status = spec.notify.status
                options.notification = Poll(spec.notify.poll, context.sampler(status.build(), "status_time") if status is not None else None)
        tier = WebTier(context.env, spec.name, arrival_process(spec.arrivals, context, spec.name), spec.handlers, context.fates,
                       context.boundary(spec.name, "handlers", keep_sojourns=False), context.boundary(f"{spec.name}:queue", "handlers", keep_sojourns=False),
                       context.counter(spec.name), options, context.window_start_s)
        context.network.targets[spec.name] = tier
        for name in signalled_by:  # the stations signalling it were built before it
            if name in context.network.section("delays"):
                context.part("delays", name).next_hop = tier
        return tier

    def measure(self, spec: WebTierSpec, tier: WebTier, context, measures) -> None:
        """What the user sees (response, perceived, completed and notified latencies), the
        handlers' utilisation and wait, 202s and 503s, and the share of missed deadlines."""
        prefix, window = f"web.{spec.name}", measures.window_s
        recorder = context.recorder
        busy, queue, counted = recorder.boundaries[spec.name], recorder.boundaries[f"{spec.name}:queue"], recorder.counters[spec.name]
        measures.metrics[f"{prefix}.handlers.utilization"] = busy.area / (spec.handlers * window)
        measures.metrics[f"{prefix}.handlers.busy_mean"] = busy.area / window
        measures.metrics[f"{prefix}.handlers.hold_s.mean"] = busy.sojourn_sum / busy.completed if busy.completed else float("nan")
        measures.metrics[f"{prefix}.handlers.wait_s.mean"] = queue.sojourn_sum / queue.completed if queue.completed else float("nan")
        measures.metrics[f"{prefix}.handlers.waiting_mean"] = queue.area / window
        measures.series[f"{prefix}.handlers.utilization"] = measures.level(busy) / spec.handlers
        measures.counts(prefix, counted, WEB_EVENTS)
        requests = counted["requests"]
        if spec.notify is not None and spec.notify.poll is not None:
            measures.counts(prefix, counted, ("polls",))
            measures.metrics[f"{prefix}.polls_per_request"] = counted["polls"] / counted["accepted"] if counted["accepted"] else float("nan")
        measures.metrics[f"{prefix}.refused_rate"] = counted["refused"] / requests if requests else float("nan")
        measures.metrics[f"{prefix}.requests_per_s"] = requests / window
        for name in ("response_s", "perceived_s", "completed_s", "notified_s"):
            measures.distribution(f"{prefix}.{name}", np.frombuffer(getattr(tier, name), dtype=np.float64))
        if spec.deadline is not None:
            for name in ("completed", "notified"):
                met = int((np.frombuffer(getattr(tier, f"{name}_s"), dtype=np.float64) <= spec.deadline).sum())
                measures.metrics[f"{prefix}.deadline.{name}_missed_rate"] = 1.0 - met / requests if requests else float("nan")

    def shown(self, measured: dict) -> Iterable[Shown]:
        """The handlers, what the user waits for, and after a 202 what the user sees and when the work is done."""
        yield Shown("handlers' utilisation", "handlers.utilization", "%")
        yield Shown("wait for a handler, mean", "handlers.wait_s.mean", "s")
        yield Shown("response p50 (the user waits)", "response_s.p50", "s")
        yield Shown("response p99", "response_s.p99", "s")
        if measured.get("refused", {}).get("mean"):
            yield Shown("refused (503)", "refused_rate", "%")
        if measured.get("accepted", {}).get("mean"):  # asynchronous: the answer is a 202
            yield Shown("perceived p99 (202 + client step)", "perceived_s.p99", "s")
        yield Shown("completed mean (the work done)", "completed_s.mean", "s")
        yield Shown("completed p99", "completed_s.p99", "s")
        if measured.get("accepted", {}).get("mean"):
            yield Shown("notified p99 (the user knows)", "notified_s.p99", "s")
        if "polls_per_request" in measured:
            yield Shown("status polls per request (each holds a handler)", "polls_per_request")
        for name, label in (("completed", "completed"), ("notified", "notified")):
            if f"{name}_missed_rate" in measured.get("deadline", {}):
                yield Shown(f"deadline missed ({label})", f"deadline.{name}_missed_rate", "%")

    def load(self, spec: WebTierSpec, scenario, sent_per_s: dict[str, float]) -> Load:
        held_s, scv, exponential = handler_time(spec, {d.name: d for d in scenario.delays})
        return Load(spec.name, spec.arrivals.mean_rate(), held_s, spec.handlers, scv, spec.arrivals.process == "poisson", exponential)

    def theory(self, spec: WebTierSpec, load: Load, queue) -> dict[str, tuple[float, bool]]:
        """The handler pool is an M/G/c queue whose service is the whole call (Erlang C when that
        is exponential, Allen–Cunneen otherwise); the response adds the request and respond links.
        None with a ``backlog`` (refusals) or polling (the polls' handler time depends on completions)."""
        if spec.backlog is not None or (spec.notify is not None and spec.notify.poll is not None):
            return {}
        prefix = f"web.{spec.name}"
        values = {f"{prefix}.handlers.hold_s.mean": (load.held_s, True)}
        if load.offered_load >= 1:
            return values
        values[f"{prefix}.handlers.utilization"] = (load.offered_load, True)
        values[f"{prefix}.handlers.busy_mean"] = (load.busy_mean, True)
        queued = queue(load)
        if queued is None:
            return values
        metrics, exact = queued
        links = sum(getattr(spec.links, hop).build().mean for hop in ("request", "respond") if getattr(spec.links, hop) is not None)
        values[f"{prefix}.handlers.wait_s.mean"] = (metrics.wait_s, exact)
        values[f"{prefix}.handlers.waiting_mean"] = (metrics.queue_length, exact)
        values[f"{prefix}.response_s.mean"] = (links + metrics.sojourn_s, exact)
        return values

    def box(self, spec: WebTierSpec, measured: dict) -> Box:
        mode = "in-line" if spec.publishes_to is None else "answers 202"
        text = f"{spec.handlers} handlers, {mode}\n{spec.arrivals.mean_rate():.3g} requests/s"
        busy = measured.get("handlers", {}).get("utilization", {}).get("mean")
        if busy is not None:
            text += f"\nbusy {100 * busy:.3g}%"
        return Box("web tier", text, source=True)

    def arrows(self, spec: WebTierSpec, scenario) -> Iterable[Arrow]:
        for name in spec.calls:
            yield Arrow(name, "calls (waits)")
        if spec.publishes_to is not None:
            yield Arrow(spec.publishes_to, "publishes")

    def models(self, spec: WebTierSpec, tier: WebTier) -> Iterable[tuple[type, str]]:
        """The tier, its arrivals, its links and its notification."""
        yield type(tier), f"web tier {spec.name}"
        yield type(tier.arrivals), f"arrivals of {spec.name}"
        options = tier.options
        for hop in LINKS:
            if getattr(options, hop) is not None:
                yield type(getattr(options, hop)), f"link {hop} of {spec.name}"
        if options.notification is not None:
            yield type(options.notification), f"notification of {spec.name}"
