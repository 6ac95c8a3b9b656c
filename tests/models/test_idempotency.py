"""models/idempotency.py: a processed-ids table in the consumer's transaction skips copies."""

import simpy

from models.idempotency import IdempotentDone
from models.workers import Done


class NextHop:
    """A next stage that answers from ``answers`` and logs the ids it takes."""

    def __init__(self, answers):
        self.answers = iter(answers)
        self.took = []

    def put(self, message):
        if next(self.answers):
            self.took.append(message.id)
            return True
        return False


def test_a_second_copy_of_a_processed_message_is_suppressed(fates, observer, counts):
    env = simpy.Environment()
    done = IdempotentDone(env, fates, counts(), Done(env, fates))
    first, other = fates.new_message(0.0), fates.new_message(0.0)
    env.timeout(1.0).callbacks.append(lambda _: done.put(first))
    env.timeout(2.0).callbacks.append(lambda _: [done.put(first), done.put(other)])
    env.run()
    assert observer.fates("processed") == [(0, 1.0), (1, 2.0)]
    assert observer.fates("suppressed") == [(0, 2.0)] and done.counts["suppressed"] == 1


def test_a_copy_whose_result_the_next_hop_refused_is_not_recorded_and_a_later_copy_goes_through(fates, observer, counts):
    env = simpy.Environment()
    hop = NextHop([False, True])
    done = IdempotentDone(env, fates, counts(), hop)
    message = fates.new_message(0.0)
    assert [done.put(message), done.put(message), done.put(message)] == [False, True, True]
    assert hop.took == [0] and observer.fates("suppressed") == [(0, 0.0)]


def test_ids_far_beyond_the_table_are_remembered_and_others_are_not(fates, observer, counts):
    env = simpy.Environment()
    done = IdempotentDone(env, fates, counts(), Done(env, fates))
    messages = [fates.new_message(0.0) for _ in range(5000)]
    done.put(messages[4999])
    done.put(messages[4999])
    done.put(messages[4998])
    assert observer.fates("suppressed") == [(4999, 0.0)] and [i for i, _ in observer.fates("processed")] == [4999, 4998]
