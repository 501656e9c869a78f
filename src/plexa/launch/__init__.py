"""The launch layer: where actor processes run, behind one interface."""
