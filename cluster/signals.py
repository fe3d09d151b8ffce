"""Signals cluster sends to the apps built on it, which it does not import."""

from django.dispatch import Signal

# Sent by services.remove_node() before a node is forgotten, with `node_id`. A receiver that
# knows of data kept on that node's disk (filesystem: its files) refuses by raising NodeInUse.
node_removing = Signal()
