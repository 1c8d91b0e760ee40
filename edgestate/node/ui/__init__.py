"""The dashboard's static files (``static/``), served by ``edgestate.node.api.dashboard``."""
