"""Reading back the few values a test recorded in a sketch."""

import numpy as np
import pytest

from sim.sketch import RELATIVE_ACCURACY, bucket_value


def recorded(sketch):
    """The values ``sketch`` holds, in increasing order, each as its bucket answers it: compares
    equal to the values themselves within the sketch's relative accuracy α (|x̂ − x| ≤ α·x, so
    within α/(1 − α) of the bucket's answer x̂)."""
    d = sketch.distribution().whole()
    keys = np.repeat(d.offset + np.arange(d.counts.shape[1]), d.counts[0])
    return pytest.approx([0.0] * int(d.zeros[0]) + list(bucket_value(keys)), rel=RELATIVE_ACCURACY / (1 - RELATIVE_ACCURACY))
