"""The runtime layer: what runs inside an actor process (the loop, safe points, services, pools)."""
