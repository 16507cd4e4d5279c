"""The launch layer, on top of everything: the `binwatch` CLI and its commands, the demo, the
child-server runner, the Grafana push, and the registry's migrations (the one place that gathers
every domain's tables)."""
