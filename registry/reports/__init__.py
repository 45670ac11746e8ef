"""Reports: computing (``study``) apart from rendering (``render_*``)."""
