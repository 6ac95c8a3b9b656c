"""The Recorder keeps counters, a table of the messages in flight, and a few bits a message for
what outlives a message's outcome: its counts against hand-computed cases, its time bins against
numpy's histogram, and what it retains after real runs."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import simpy

import sim.recorder
from models.fates import Fates
from sim import load_scenario, scenario_from_dict
from sim.network import build
from sim.packed import PackedCodes
from sim.recorder import DEAD_LETTERED, IN_FLIGHT, LOST, PROCESSED, REJECTED, TIME_BINS, Recorder
from sim.streams import Streams
from tests.sketches import recorded

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


@dataclass
class Request:
    id: int
    created_s: float
    admitted_s: float


class Spy(Recorder):
    """A Recorder that also notes every creation time, to recount what it tallied."""

    def __init__(self, warmup_s, duration_s):
        super().__init__(warmup_s, duration_s)
        self.times = []

    def created(self, now):
        self.times.append(now)
        return super().created(now)


def replicate(spec, recorder_class=Spy):
    env = simpy.Environment()
    recorder = recorder_class(spec.warmup, spec.duration)
    network, _ = build(spec, env, recorder, Streams(spec.seed, 0))
    env.run(until=spec.warmup)
    recorder.open_window(env.now)
    env.run(until=spec.duration)
    recorder.close(spec.duration)
    return recorder, network


# --- counters against a hand-computed case ----------------------------------------------------


def test_outcomes_are_tallied_when_they_happen_and_changed_by_later_copies():
    recorder = Recorder(warmup_s=10.0, duration_s=100.0)
    fates = Fates(recorder)
    early, dup, revived, parked, refused_then_done, at_door, done_then_refused, waiting = (
        fates.new_message(t) for t in (5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 55.0, 60.0))
    for m in (early, dup, revived, parked, refused_then_done, done_then_refused, waiting):
        recorder.admitted(m, m.created_s)
    recorder.processed(early, 15.0)
    recorder.processed(early, 16.0)  # a duplicate of a warm-up message: not counted
    recorder.processed(dup, 12.0)
    recorder.processed(dup, 13.0)  # a duplicate
    recorder.lost(revived, 25.0)
    recorder.processed(revived, 26.0)  # a copy survived: processed after all
    recorder.processed(revived, 27.0)  # and then a duplicate
    recorder.dead_lettered(parked, 35.0)
    recorder.lost(parked, 36.0)  # no change: it has an outcome
    recorder.rejected(refused_then_done, 41.0, admitted=True)
    recorder.processed(refused_then_done, 42.0)  # stays rejected
    recorder.rejected(at_door, 50.0, admitted=False)
    recorder.processed(done_then_refused, 56.0)
    recorder.rejected(done_then_refused, 57.0, admitted=False)  # refused at the door: rejected whatever it was
    assert recorder.counts() == {"produced": 7, "in_flight": 1, "processed": 2, "lost": 0, "rejected": 3,
                                 "dead_lettered": 1, "duplicates": 2}
    assert [recorder.outcome_of(m.id) for m in (early, dup, revived, parked, refused_then_done, at_door, done_then_refused, waiting)] == [
        PROCESSED, PROCESSED, PROCESSED, DEAD_LETTERED, REJECTED, REJECTED, REJECTED, IN_FLIGHT]
    assert list(recorder.in_flight_ids()) == [waiting.id] and recorder.in_flight == {waiting.id: 60.0}
    assert [fates.settled(m) for m in (dup, parked, waiting)] == [True, True, False]
    assert recorder.system.n == 1  # each admitted message left the system once, at its outcome
    assert recorded(recorder.latency_s) == [1.0, 2.0]  # dup's and done_then_refused's first processings


def test_outcomes_outlive_settlement_in_two_bits_up_to_the_last_message_not_processed():
    recorder = Recorder(warmup_s=0.0, duration_s=100.0)
    fates = Fates(recorder)
    messages = [fates.new_message(1.0) for _ in range(40)]
    for m in messages:
        recorder.processed(m, 2.0)
    assert len(recorder.settled_outcomes.data) == 0  # processed reads 0: nothing kept
    recorder.lost(fates.new_message(3.0), 4.0)  # id 40: bytes 0..10
    for m in (fates.new_message(3.0) for _ in range(100)):
        recorder.processed(m, 4.0)
    assert len(recorder.settled_outcomes.data) == 40 // 4 + 1
    assert recorder.outcome_of(40) == LOST and recorder.outcome_of(140) == PROCESSED and not recorder.in_flight


def test_a_request_settles_once_and_keeps_no_commit_time():
    recorder = Recorder(warmup_s=0.0, duration_s=100.0)
    recorder.track_consistency()
    kept, given_up = (Request(recorder.created(1.0), 1.0, 1.5) for _ in range(2))
    for request in (kept, given_up):
        recorder.request_admitted(request, request.admitted_s)
    recorder.committed(given_up, 2.0)
    assert recorder.committed_s == {given_up.id: 2.0}
    recorder.request_settled(kept, 3.0, "processed")
    recorder.request_settled(given_up, 4.0, "rejected")
    recorder.request_settled(given_up, 5.0, "processed")  # too late: it has its outcome
    counts = recorder.counts()
    assert (counts["processed"], counts["rejected"], counts["in_flight"]) == (1, 1, 0)
    assert recorder.committed_s == {} and recorded(recorder.latency_s) == [2.0] and recorder.system.n == 0


def test_the_consistency_of_events_made_in_the_window_counted_a_chunk_at_a_time(monkeypatch):
    recorder = Recorder(warmup_s=10.0, duration_s=100.0)
    recorder.track_consistency()
    fates = Fates(recorder)
    warm = fates.new_message(5.0)
    recorder.committed(warm, 6.0)
    recorder.processed(warm, 7.0)
    once, twice, lost, pending, phantom, skipped = (fates.new_message(20.0) for _ in range(6))
    for m in (once, twice, lost, pending, skipped):
        recorder.committed(m, 21.0)
    recorder.processed(once, 22.0)
    recorder.processed(twice, 23.0)
    recorder.processed(twice, 24.0)
    recorder.lost(lost, 23.0)
    recorder.processed(phantom, 22.0)
    recorder.not_committed(phantom, 23.0)
    recorder.processed(skipped, 25.0)
    recorder.suppressed(skipped, 26.0)
    expected = {"committed": 5, "not_committed": 1, "delivered_once": 1, "delivered_more_than_once": 2, "never_delivered": 1,
                "phantom": 1, "suppressed": 1, "processed_before_commit": 0, "committed_in_flight": 1}
    assert recorder.consistency_counts() == expected
    monkeypatch.setattr(sim.recorder, "_CHUNK", 2)  # chunks that split the bytes of the packed flags
    assert recorder.consistency_counts() == expected
    assert recorded(recorder.commit_to_processed_s) == [1.0, 2.0, 4.0]  # the warm-up message's is not counted
    assert recorder.committed_s == {pending.id: 21.0}


# --- time bins --------------------------------------------------------------------------------


def test_messages_made_per_time_bin_are_numpys_histogram_to_the_bit():
    duration = 1_000.0 / 3.0
    edges = np.linspace(0.0, duration, TIME_BINS + 1)
    rng = np.random.default_rng(1)
    times = np.sort(np.concatenate([rng.uniform(0.0, duration, 5_000), edges, np.nextafter(edges, 0.0), [0.0, duration]]))
    recorder = Recorder(warmup_s=100.0, duration_s=duration)
    for t in times:
        recorder.created(float(t))
    expected, _ = np.histogram(times, bins=TIME_BINS, range=(0.0, duration))
    assert recorder.created_per_bin[:TIME_BINS] == expected.tolist() and recorder.created_per_bin[TIME_BINS] == 0
    assert recorder.produced == int((times >= 100.0).sum()) and recorder.messages == times.size


# --- packed codes -------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 4])
def test_packed_codes_read_back_what_was_written_and_unpack_any_range(bits):
    codes = PackedCodes(bits)
    rng = np.random.default_rng(bits)
    expected = np.zeros(50, dtype=np.uint8)
    for i in rng.permutation(45)[:30]:
        value = int(rng.integers(0, 1 << bits))
        codes.set(int(i), value)
        expected[i] = value
    codes.set(3, 1)
    codes.add(3, 1 << (bits - 1))
    expected[3] = 1 | 1 << (bits - 1)
    assert [codes.get(i) for i in range(50)] == expected.tolist()  # beyond the array: 0
    assert len(codes.data) * 8 // bits <= 45 + 8 // bits
    for start, stop in ((0, 50), (1, 2), (3, 47), (45, 50), (7, 7)):
        assert codes.unpack(start, stop).tolist() == expected[start:stop].tolist()


# --- what a real run retains -------------------------------------------------------------------


def test_after_a_run_with_losses_only_messages_held_are_in_flight_and_the_counts_recount():
    spec = scenario_from_dict({
        "name": "crashes", "seed": 5, "duration": 600, "warmup": 60,
        "producers": [{"name": "web", "arrivals": {"process": "poisson", "rate": 20.0}, "sends_to": "jobs"}],
        "brokers": [{"name": "jobs", "kind": "redis", "mode": "list"}],
        "workers": [{"name": "renderer", "consumes": "jobs", "count": 40,
                     "service_time": {"dist": "lognormal", "mean": 1.5, "cv": 0.6},
                     "crashes": {"mtbf": 60.0, "restart_time": 5.0}}],
    })
    recorder, network = replicate(spec)
    assert recorder.messages == len(recorder.times) > 10_000
    held = set(network.held_ids())
    assert recorder.in_flight and set(recorder.in_flight) <= held and len(recorder.in_flight) <= 60
    assert all(recorder.in_flight[i] == recorder.times[i] for i in recorder.in_flight)
    outcomes = [recorder.outcome_of(i) for i in range(recorder.messages)]
    not_processed = [i for i, o in enumerate(outcomes) if o not in (IN_FLIGHT, PROCESSED)]
    assert len(not_processed) > 10
    assert len(recorder.settled_outcomes.data) == max(not_processed) // 4 + 1  # a quarter byte a message at most
    in_window = [o for o, t in zip(outcomes, recorder.times) if t >= spec.warmup]
    counts = recorder.counts()
    assert {name: counts[name] for name in ("produced", "in_flight", "processed", "lost", "rejected", "dead_lettered")} == {
        "produced": len(in_window), "in_flight": in_window.count(IN_FLIGHT), "processed": in_window.count(PROCESSED),
        "lost": in_window.count(LOST), "rejected": in_window.count(REJECTED), "dead_lettered": in_window.count(DEAD_LETTERED)}
    assert counts["lost"] > 0
    assert len(recorder.flags.data) == 0 and not recorder.committed_s  # no business rows here


def test_after_an_outbox_run_the_flags_take_half_a_byte_a_message_and_commit_times_only_in_flight(monkeypatch):
    spec = load_scenario(SCENARIOS / "order-payment-outbox-no-locking.yaml", ["duration=4m", "warmup=30s"])
    recorder, network = replicate(spec)
    assert recorder.tracks_consistency and recorder.messages > 3_000
    assert len(recorder.flags.data) <= recorder.messages // 2 + 1
    assert set(recorder.committed_s) <= set(recorder.in_flight) and set(recorder.in_flight) <= set(network.held_ids())
    counts = recorder.counts()
    monkeypatch.setattr(sim.recorder, "_CHUNK", 1_001)
    assert recorder.counts() == counts
    assert counts["committed"] + counts["not_committed"] <= counts["produced"] and counts["delivered_once"] > 0
