"""End-to-end tests: whole local clusters made by `clusterctl cluster up`, driven through
clusterctl."""
