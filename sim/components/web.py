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
from .base import BROKER, Finding, Kind, Source
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
    every ``poll`` from the 202 (told at the first poll after the completion)."""

    push: Optional[DurationOrDistribution] = None
    poll: Optional[PositiveDuration] = None

    @model_validator(mode="after")
    def _one_way(self):
        if (self.push is None) == (self.poll is None):
            raise ValueError("give one way to notify: push (a latency) or poll (an interval)")
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


def mean_stay_s(station, draws: int = 4000) -> float:
    """A delay station's mean stay: its delay's mean, or for a fan-out the mean of the largest of
    ``fan_out`` draws, estimated from ``draws`` samples (a fixed seed: the same every time)."""
    distribution = station.delay.build()
    if station.fan_out == 1:
        return distribution.mean
    samples = distribution.draw(np.random.default_rng(0), draws * station.fan_out).reshape(draws, station.fan_out)
    return float(samples.max(axis=1).mean())


def handler_time_s(spec: WebTierSpec, stations: dict) -> float:
    """The mean time a request holds its handler: work, calls and the publication."""
    held = spec.work.build().mean if spec.work is not None else 0.0
    held += sum(mean_stay_s(stations[name]) for name in spec.calls)
    if spec.links.publish is not None:
        held += spec.links.publish.build().mean
    return held


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
        signalled = any(pool.sends_to == spec.name for pool in scenario.workers)
        if spec.notify is not None and not signalled:
            yield Finding("notify", "no worker pool signals this tier's completions (sends_to: " + spec.name + "), so no user would be notified")
        if spec.deadline is not None and spec.publishes_to is not None and not signalled:
            yield Finding("deadline", "no worker pool signals this tier's completions (sends_to: " + spec.name + "), so none could be timed against the deadline")
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
        options = WebOptions(calls=[context.part("delays", name) for name in spec.calls], backlog=spec.backlog)
        if spec.work is not None:
            options.work = context.sampler(spec.work.build(), "service_time", component=spec.work_stream or spec.name)
        for hop in LINKS:
            latency = getattr(spec.links, hop)
            if latency is not None:
                name = f"{spec.name}:{hop}"
                setattr(options, hop, Link(context.env, name, context.sampler(latency.build(), f"{hop}_latency"), context.boundary(name, "link", keep_sojourns=False)))
        if spec.publishes_to is not None:
            options.publish_to = context.target(spec.publishes_to)
        if spec.client_step is not None:
            options.client_step = context.sampler(spec.client_step.build(), "client_step")
        if spec.notify is not None:
            push = spec.notify.push
            options.notification = Poll(spec.notify.poll) if push is None else Push(context.sampler(push.build(), "push_latency"))
        tier = WebTier(context.env, spec.name, arrival_process(spec.arrivals, context, spec.name), spec.handlers, context.fates,
                       context.boundary(spec.name, "handlers", keep_sojourns=False), context.boundary(f"{spec.name}:queue", "handlers", keep_sojourns=False),
                       context.counter(spec.name), options, context.window_start_s)
        context.network.targets[spec.name] = tier
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
        measures.metrics[f"{prefix}.refused_rate"] = counted["refused"] / requests if requests else float("nan")
        measures.metrics[f"{prefix}.requests_per_s"] = requests / window
        for name in ("response_s", "perceived_s", "completed_s", "notified_s"):
            measures.distribution(f"{prefix}.{name}", np.frombuffer(getattr(tier, name), dtype=np.float64))
        if spec.deadline is not None:
            for name in ("completed", "notified"):
                met = int((np.frombuffer(getattr(tier, f"{name}_s"), dtype=np.float64) <= spec.deadline).sum())
                measures.metrics[f"{prefix}.deadline.{name}_missed_rate"] = 1.0 - met / requests if requests else float("nan")
