"""Running roomcast-operator against the e2e cluster, under the RBAC of manifests/."""
