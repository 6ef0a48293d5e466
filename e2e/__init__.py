"""End-to-end tier: the Kubernetes test bed and the suites that need it."""
