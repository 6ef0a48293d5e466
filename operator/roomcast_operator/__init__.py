"""Roomcast operator: runs Roomcast clusters described by ``RoomcastCluster`` resources."""

GROUP = "roomcast.io"
VERSION = "v1alpha1"
PLURAL = "roomcastclusters"
KIND = "RoomcastCluster"
FIELD_MANAGER = "roomcast-operator"
