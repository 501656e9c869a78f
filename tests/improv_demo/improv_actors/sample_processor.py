"""An improv-style processor: averages the rows the generator stored, and reads stimuli from
a named link (``Processor.input_stim_queue`` in the config, ``self.links[...]`` here)."""

import contextlib
import logging
import os
import queue

import numpy as np

from plexa.improv import Actor  # improv: from improv.actor import Actor

logger = logging.getLogger(__name__)


class Processor(Actor):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

    def setup(self):
        if not (isinstance(self.store_loc, str) and os.path.isdir(self.store_loc)):
            raise RuntimeError(f"store_loc should name the store's folder, not {self.store_loc!r}")
        self.stim_queue = self.links["input_stim_queue"]
        self.averages = []
        self.stims = []

    def runStep(self):
        try:
            message = self.q_in.get(timeout=0.01)
        except queue.Empty:
            message = None
        if message is not None:
            row = self.client.getID(message[0][0])
            self.averages.append(float(np.mean(row)))
        with contextlib.suppress(queue.Empty):
            self.stims.append(self.stim_queue.get(timeout=0))

    def stop(self):
        logger.info("Processor: %d averages, %d stimuli", len(self.averages), len(self.stims))
