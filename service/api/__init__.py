"""HTTP layer: app factory, routes, problem+json mapping."""
