"""An improv-style stimulus source: sends a stimulus number every 50 ms on ``q_out``."""

import time

from plexa.improv import Actor


class Stim(Actor):
    def setup(self):
        self.n = 0

    def runStep(self):
        self.q_out.put({"stim": self.n})
        self.n += 1
        time.sleep(0.05)
