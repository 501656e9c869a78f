"""The data layer: links (iceoryx2), the object store (LMDB), shared counters, payload codecs."""
