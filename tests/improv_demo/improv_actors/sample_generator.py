"""An improv-style data source, written for these tests against improv's documented actor API
(``setup``/``runStep``/``stop``, ``self.client``, ``self.q_out``). Only the import line
differs from what runs under improv."""

import logging
import time

import numpy as np

from plexa.improv import Actor, RunManager  # improv: from improv.actor import Actor, RunManager

logger = logging.getLogger(__name__)
assert RunManager is not None  # improv's demos import it too


class Generator(Actor):
    """Puts rows of random integers in the store and sends their keys downstream."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.name = "Generator"
        self.rows = None
        self.sent = 0

    def setup(self):
        self.rows = np.random.default_rng(0).integers(0, 100, size=(500, 5))
        logger.info("Generator ready; the store is at %s", self.store_loc)

    def runStep(self):
        if self.sent >= len(self.rows):
            time.sleep(0.01)
            return
        key = self.client.put(self.rows[self.sent], f"Gen_raw: {self.sent}")
        self.q_out.put([[key, str(self.sent)]])
        self.sent += 1
        time.sleep(0.005)

    def stop(self):
        logger.info("Generator stopping after %d rows", self.sent)
        return 0
