"""The runtime fleet: endpoints and their models (``config``), the backlog genq keeps per model
(``backlog``), slot leases (``slots``), endpoint health (``health``) and the dispatcher that
releases a job into the broker only with a slot it holds (``dispatcher``). See docs/fleet.md."""
